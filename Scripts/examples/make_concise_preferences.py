"""Writes the preference set of the DPO demo (Scripts/demo-dpo.sh): answer the question, then stop.

Each record is a conversation in TRL's conversational preference format: a user question, a chosen answer that
is one correct sentence, and a rejected answer that is the same sentence followed by the padding small chat models
add (offers of more help, restated context, sign-offs). The only difference between the two is that padding, so a
model that learns the preference learns to end its turn after the answer. Questions come from five kinds (capitals,
sums, colours, animal sounds, opposites); a fixed shuffle puts 66 pairs in Examples/concise-prefs.jsonl and 32 in
Examples/concise-prefs-eval.jsonl (held out, for reward accuracy), and the held-out questions with their chosen
answers as chat records in Examples/concise-questions.jsonl (for greedy answers before and after).

    python3 Scripts/examples/make_concise_preferences.py
Deterministic (no dependencies, Python's random with a fixed seed).
"""
import json, os, random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
            ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
            ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"),
            ("Peru", "Lima"), ("Chile", "Santiago"), ("Russia", "Moscow"), ("Poland", "Warsaw"), ("Greece", "Athens"),
            ("Turkey", "Ankara"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Ireland", "Dublin"),
            ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Australia", "Canberra"), ("Thailand", "Bangkok"),
            ("Vietnam", "Hanoi"), ("South Korea", "Seoul")]
COLOURS = [("the sky on a clear day", "blue"), ("grass", "green"), ("a ripe banana", "yellow"), ("fresh snow", "white"),
           ("coal", "black"), ("a ripe tomato", "red"), ("an orange", "orange"), ("a lemon", "yellow"),
           ("milk", "white"), ("a strawberry", "red"), ("a carrot", "orange"), ("the leaves of an oak in summer", "green")]
SOUNDS = [("a dog", "barks"), ("a cat", "meows"), ("a cow", "moos"), ("a duck", "quacks"), ("a sheep", "bleats"),
          ("a lion", "roars"), ("a horse", "neighs"), ("an owl", "hoots"), ("a snake", "hisses"), ("a pig", "oinks")]
OPPOSITES = [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
             ("early", "late"), ("full", "empty"), ("open", "closed"), ("strong", "weak"), ("young", "old"),
             ("wet", "dry"), ("hard", "soft"), ("loud", "quiet"), ("near", "far"), ("rich", "poor")]
PADDING = [
    " I hope this helps! Let me know if you have any other questions.",
    " This is a common question, and it is great that you asked it. Feel free to ask me anything else you would like to know!",
    " If you want, I can also tell you more about this topic, its history, and some interesting facts related to it.",
    " Please note that I am an AI assistant, and you may want to double-check this information with other sources.",
    " Is there anything else I can help you with today? I am always happy to answer more questions.",
    " To sum up, that is the answer to your question. Thank you for asking, and have a wonderful day!",
    " Many people find this interesting to learn about, so you are not alone in wondering about it.",
    " Let me know if you would like a more detailed explanation, some examples, or a summary of the key points.",
]


def items():
    for country, capital in CAPITALS:
        yield f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    rng = random.Random(7)
    for _ in range(30):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        yield f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    for thing, colour in COLOURS:
        yield f"What colour is {thing}?", f"{thing[0].upper() + thing[1:]} is {colour}."
    for animal, sound in SOUNDS:
        yield f"What sound does {animal} make?", f"{animal[0].upper() + animal[1:]} {sound}."
    for word, opposite in OPPOSITES:
        yield f"What is the opposite of \"{word}\"?", f"The opposite of \"{word}\" is \"{opposite}\"."


def main():
    rng = random.Random(2026)
    rows = []
    for k, (q, a) in enumerate(items()):
        pad = PADDING[rng.randrange(len(PADDING))]
        user = [{"role": "user", "content": q}]
        rows.append({"prompt": user, "chosen": [{"role": "assistant", "content": a}],
                     "rejected": [{"role": "assistant", "content": a + pad}]})
    rng.shuffle(rows)
    held = 32
    train, evaluation = rows[:-held], rows[-held:]
    ex = os.path.join(ROOT, "Examples")
    def write(name, records):
        with open(os.path.join(ex, name), "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    write("concise-prefs.jsonl", train)
    write("concise-prefs-eval.jsonl", evaluation)
    write("concise-questions.jsonl", [{"messages": r["prompt"] + r["chosen"]} for r in evaluation])
    print(len(train), "training pairs,", len(evaluation), "held out")


if __name__ == "__main__":
    main()
