"""Writes the preference set of the DPO demo (Scripts/demo-dpo.sh): answer the question, then stop.

Questions of five kinds (capitals, sums, colours, animal sounds, opposites), each with a one-sentence correct
answer. The default model (SmolLM2-135M-Instruct) answers every question greedily (`finch generate`, at most 64
new tokens); its answer becomes the rejected one and the one-sentence answer the chosen one, in TRL's
conversational preference format. On-policy rejected answers, as DPO is usually run: the model rambles on after
the answer (or misses it), and the pairs teach it to give the answer and end its turn. A question the model
already answers with exactly the chosen sentence gives no pair. A fixed shuffle holds 32 questions out:
Examples/concise-prefs-eval.jsonl (their pairs, for reward accuracy) and Examples/concise-questions.jsonl
(them as chat records with the expected answer, for greedy answers before and after); the others' pairs are
Examples/concise-prefs.jsonl.

    python3 Scripts/examples/make_concise_preferences.py [FINCH]     # FINCH: the finch binary (.build/release/finch)
Deterministic for a given build of finch (greedy decoding; Python's random with a fixed seed). The committed files
were made by the finch built from the commit that added them, on the AMD EPYC host of docs/benchmarks.md.
"""
import json, os, random, subprocess, sys, tempfile

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
    finch = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "release", "finch")
    rows = [(q, a) for q, a in items()]
    random.Random(2026).shuffle(rows)
    held = 32
    ex = os.path.join(ROOT, "Examples")
    def write(name, records):
        with open(os.path.join(ex, name), "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    chat = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    with tempfile.TemporaryDirectory() as tmp:
        questions, answers = os.path.join(tmp, "questions.jsonl"), os.path.join(tmp, "answers.jsonl")
        with open(questions, "w") as f:
            for q, a in rows:
                f.write(json.dumps(chat(q, a), ensure_ascii=False) + "\n")
        subprocess.run([finch, "generate", "--data", questions, "--output", answers, "--max-new-tokens", "64"], check=True)
        said = [json.loads(l)["output"] for l in open(answers) if l.strip()]
    pairs = []
    for (q, a), s in zip(rows, said):
        pairs.append(None if s.strip() == a else {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
                                                  "rejected": [{"role": "assistant", "content": s.strip()}]})
    train, evaluation = pairs[:-held], pairs[-held:]
    write("concise-prefs.jsonl", [p for p in train if p])
    write("concise-prefs-eval.jsonl", [p for p in evaluation if p])
    write("concise-questions.jsonl", [chat(q, a) for q, a in rows[-held:]])
    print(sum(p is not None for p in train), "training pairs,", sum(p is not None for p in evaluation), "held-out pairs")


if __name__ == "__main__":
    main()
