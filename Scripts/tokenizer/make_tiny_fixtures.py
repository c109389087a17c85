"""Small tokenizer.json fixtures (no model needed) and their expected ids, made with HF `tokenizers`.

Writes under Tests/Fixtures/tokenizer/:
  tiny/<name>/tokenizer.json (+ tokenizer_config.json)  small BPE tokenizers of several shapes
  tiny_cases.json      per fixture: texts, ids without/with special tokens, decoded text
  unicode_classes.json code point ranges Oniguruma (as used by `tokenizers`) puts in \\p{L}, \\p{N}, \\s
  tiny.metadata.json   what made them (fixture_io.write_metadata: the script, pip freeze of the venv, the files)

Run from the repository root: "$(Scripts/reference-venv.sh)"/bin/python Scripts/tokenizer/make_tiny_fixtures.py
"""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")
sys.path.insert(0, os.path.join(ROOT, "Scripts", "fixtures"))
from fixture_io import write_metadata  # noqa: E402
TEMPLATE = open(os.path.join(FIX, "templates", "smollm2.jinja"), encoding="utf-8").read()

TRAIN = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away quickly.",
    "Low-rank adaptation freezes the weights of a pretrained network and learns a small update.",
    "def train(model, data):\n    for batch in data:\n        loss = model(batch)\n        loss.backward()\n",
    "Numbers like 12345 and 3.14159 appear in text, as do dates such as 2024-11-23.",
    "Ünïcödé text: naïve café, déjà vu, Straße, 日本語, русский язык, emoji 🤖🦙.",
    "don't won't can't it's I'm they're we've you'll she'd",
    "hello hello hello world, hello there; say hello to the world",
] * 20

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
          r"\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
          r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|"
          r"\s+(?!\S)|\s+")

TEXTS = [
    "", " ", "Hello, world!", "hello world", "say hello", "hellos", "ahello", "hello.", "  hello  ", "The quick brown fox",
    "don't DON'T it's", "12345 3.14159", "naïve café 日本語 🤖", "e\u0301 vs \u00e9", "ﬁne ＡＢＣ",
    "<s>bos</s>", "x [MASK] y", "x[MASK]y", "a <sep>   b", "a<sep>b", "<tool>call</tool>", "<|im_start|>user\nhi<|im_end|>\n",
    "line\n\nbreaks\r\n  and   spaces\t\t", "unknown: ☃ ✓ ∑", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "x" * 200, "Numbers 0 00 000 0000", "MIXEDcase CamelCaseWords snake_case_words", "'s 'S 'll 'LL",
]


def write(tok, name, config=None):
    d = os.path.join(FIX, "tiny", name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=True)
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    # With a tokenizer_config.json, transformers is the reference (it applies add_bos_token etc.).
    hf = None
    if config is not None:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(d)
    cases = []
    for t in TEXTS:
        ids = tok.encode(t, add_special_tokens=False).ids
        special = tok.encode(t, add_special_tokens=True).ids
        if hf is not None:
            assert hf(t, add_special_tokens=False).input_ids == ids, t
            special = hf(t, add_special_tokens=True).input_ids
            assert hf.decode(ids) == tok.decode(ids, skip_special_tokens=False)
        cases.append({"text": t, "ids": ids, "ids_special": special,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return cases


def added(tok):
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False),
                            AddedToken("</s>", special=True, normalized=False),
                            AddedToken("<|im_start|>", special=True, normalized=False),
                            AddedToken("<|im_end|>", special=True, normalized=False),
                            AddedToken("[MASK]", special=True, lstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("<sep>", rstrip=True, normalized=False),
                    AddedToken("hello", single_word=True, normalized=True),
                    AddedToken("<tool>", normalized=False), AddedToken("</tool>", normalized=False)])


def byte_level():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN, trainer)
    added(tok)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A </s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    config = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "chat_template": TEMPLATE,
              "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"}
    return write(tok, "bytelevel", config)


def llama3_style():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN, trainer)
    added(tok)
    return write(tok, "llama3", {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
                                 "tokenizer_class": "PreTrainedTokenizerFast"})


def custom_regex():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(TEKKEN), behavior="isolated"),
                                                 pre_tokenizers.Split(Regex(r"\d"), behavior="merged_with_previous"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=380, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN, trainer)
    return write(tok, "customregex")


def sentencepiece_style():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    tok.train_from_iterator([t.replace(" ", "\u2581") for t in TRAIN], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return write(tok, "spm", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                              "tokenizer_class": "PreTrainedTokenizerFast"})


def metaspace():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(TRAIN, trainer)
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False)])
    return write(tok, "metaspace")


def unicode_classes():
    """Ranges of code points in each class, as Oniguruma (inside `tokenizers`) sees them."""
    result = {}
    chars = [c for c in range(0x110000) if not (0xD800 <= c < 0xE000)]
    text = "".join(chr(c) for c in chars)
    for name, pattern in (("L", r"\p{L}"), ("N", r"\p{N}"), ("S", r"\s")):
        pre = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        members = set()
        # Isolated pieces of one character that match the class are the members.
        check = pre_tokenizers.Split(Regex("^" + pattern + "$"), behavior="removed")
        for piece, _ in pre.pre_tokenize_str(text):
            if len(piece) == 1 and check.pre_tokenize_str(piece) == []:
                members.add(ord(piece))
        ranges = []
        for c in sorted(members):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
        result[name] = ranges
    with open(os.path.join(FIX, "unicode_classes.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    return {k: len(v) for k, v in result.items()}


def main():
    cases = {"bytelevel": byte_level(), "llama3": llama3_style(), "customregex": custom_regex(),
             "spm": sentencepiece_style(), "metaspace": metaspace()}
    with open(os.path.join(FIX, "tiny_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("tiny fixtures:", {k: len(v) for k, v in cases.items()})
    print("unicode class ranges:", unicode_classes())
    files = [os.path.join("tiny", name, f) for name in cases for f in sorted(os.listdir(os.path.join(FIX, "tiny", name)))]
    write_metadata(FIX, __file__, files + ["tiny_cases.json", "unicode_classes.json"], file_name="tiny.metadata.json")


if __name__ == "__main__":
    main()
