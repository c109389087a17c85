"""Token ids of a larger tokenizer corpus, made by transformers from the real SmolLM2 GGUF.

The ids come from `AutoTokenizer.from_pretrained(dir, gguf_file=...)` and
`tok(text, add_special_tokens=False)`, exactly as Scripts/fixtures/make_smollm2_goldens.py makes
Tests/Fixtures/smollm2/tokenizer_golden.json (checked here for SmolLM2). The data-set lines come from
Tests/Fixtures/datasets. Building a tokenizer from a GGUF does not use torch, but transformers imports it
on that path; when torch is not installed a stand-in module is registered so the
import succeeds (only the tokenizer is built; no tensor is touched).

Run from the repository root:
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/tokenizer/make_corpus.py [path/to/model.gguf [out.json]]
Writes Tests/Fixtures/tokenizer/corpus.json (SmolLM2, the default) or `out.json` (e.g.
Tests/Fixtures/gemma3-270m/tokenizer_corpus.json for the Gemma 3 270M GGUF):
[{"text", "ids", "decoded", "decoded_skip_special"}], and beside it <name>.metadata.json (corpus.metadata.json):
what made it (fixture_io.write_metadata: the script, pip freeze of the venv, the GGUF's sha256).
"""
import importlib.util
import json
import os
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Scripts", "fixtures"))
from fixture_io import sha256, write_metadata  # noqa: E402
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "corpus.json")
DATASETS = os.path.join(ROOT, "Tests", "Fixtures", "datasets")   # qlora's data sets, committed as they are
GGUF = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
    [os.path.join(ROOT, "Scripts", "fetch-model.sh"), "smollm2-135m"], check=True, capture_output=True, text=True
).stdout.strip().splitlines()[-1]


def load_tokenizer():
    import transformers  # noqa: F401  (decides torch availability before any stand-in exists)
    if importlib.util.find_spec("torch") is None:
        class _Any:
            def __init__(self, *a, **k): pass
            def __call__(self, *a, **k): return _Any()
            def __getattr__(self, n): return _Any()
        stub = types.ModuleType("torch")
        stub.__getattr__ = lambda n: _Any()
        sys.modules["torch"] = stub
        import transformers.utils as tu
        import transformers.modeling_gguf_pytorch_utils as mg
        tu.is_torch_available = lambda: True
        mg.is_torch_available = lambda: True
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))


HANDWRITTEN = [
    # whitespace
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "a  b", "a   b", "a\tb", "a \tb", "a\t b", "a\n\nb",
    "   leading", "trailing   ", " \t\n mixed \r\n\t ", "line1\nline2\r\nline3\rline4", "x\u00a0y", "x\u2003y\u3000z",
    "\u0085next\u2028line\u2029para", "\u000bvt\u000cff", "tab\t\t\tend", "    indented code", "\n\n\n\n\n", "a" + " " * 40 + "b",
    # contractions and case
    "don't", "DON'T", "I'm", "I'M", "we've", "WE'VE", "they'll", "THEY'LL", "she'd", "it's", "IT'S", "'s", "'S", "''s",
    "rock 'n' roll", "'quoted'", "\"double\"", "l'homme", "y'all", "ſ 'ſ",
    # numbers
    "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "-273.15", "1e-9", "1,000,000", "$1,234.56",
    "2024-11-23", "12:34:56", "v1.2.3", "0x1F", "½ ¾ ² ³ ¹", "Ⅻ Ⅳ ⅷ", "٣٤٥ ۶۷۸", "१२३ ๑๒๓", "１２３ＡＢＣ",
    # punctuation and symbols
    "Hello, world!", "Wait... what?!", "(parenthesized) [bracketed] {braced}", "a+b=c; d-e*f/g", "<html><body>",
    "#hashtag @mention", "email@example.com", "C:\\path\\to\\file.txt", "~/.config/x", "a|b&c^d%e", "«guillemets» „quotes“",
    "—em dash– en dash", "…ellipsis", "•bullet ◦ ▪", "©®™", "€£¥₹₿", "→←↑↓⇒", "∀x∈ℝ: x²≥0", "©2024",
    # code
    "def f(x):\n    return x**2  # code",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "func encode(_ text: String) -> [Int] {\n    return []\n}",
    "SELECT * FROM users WHERE id = 42;",
    "const x = {a: 1, 'b': [2, 3], \"c\": null};",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
    "if __name__ == '__main__':\n    main()",
    "    \n    \n        x = 1\n",
    "https://example.com/a?b=c&d=e#frag",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    # special tokens inside text
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|><|im_end|>", " <|im_end|> ", "x<|im_start|>y",
    "<|im_start", "im_start|>", "<|im_start|", "<<|im_end|>>", "<repo_name>finch<file_sep>a.swift<filename>",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>", "<|endoftext|><|endoftext|>", "text<|endoftext|>\n",
    "<issue_start>bug<issue_comment>fix<issue_closed>", "<gh_stars>100",
    # multilingual
    "naïve café — déjà vu", "Ünïcödé\u200bzero\u00a0width", "ÀÉÎÕÜ ß Ø", "Straße", "İstanbul ıi", "ﬁ ﬂ ﬀ",
    "日本語のテキスト", "中文文本，标点符号。", "한국어 텍스트입니다", "Русский текст, ёж", "Ελληνικά κείμενα",
    "עברית טקסט", "العربية نص", "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu", "ქართული", "Հայերեն", "ᐃᓄᒃᑎᑐᑦ",
    "e\u0301 combining", "a\u0308o\u0308u\u0308", "Z\u0351\u0364\u035ba\u0300\u0301lgo",
    # emoji
    "emoji 🤖🦙🔥 mixed", "👍🏽👩‍👩‍👧‍👦🏳️‍🌈", "🇫🇷🇯🇵", "❤️‍🔥 ☕️", "a🤖b🤖c", "🤖" * 10, "😀 😃 😄 😁",
    # long runs
    "a" * 50, "a" * 300, "ab" * 100, "-" * 80, "=" * 33, "." * 17, "1" * 25, "🙂" * 30, " " * 100, "\n" * 30,
    "aaaa bbbb cccc dddd " * 20,
    "x" * 1000,
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
]


def unicode_sweeps():
    """Strings that walk through many Unicode blocks, mixing classes so that every scanner
    branch sees non-ASCII letters, numbers, marks, symbols and spaces."""
    blocks = [(0x00A0, 0x0250), (0x0250, 0x0370), (0x0370, 0x0530), (0x0530, 0x0700), (0x0700, 0x0900),
              (0x0900, 0x0B00), (0x0B00, 0x0E00), (0x0E00, 0x1000), (0x1000, 0x1400), (0x1680, 0x1800),
              (0x1E00, 0x2000), (0x2000, 0x2070), (0x2070, 0x2200), (0x2200, 0x2400), (0x2460, 0x2800),
              (0x2E80, 0x3100), (0x3100, 0x3300), (0x4E00, 0x4F00), (0xA000, 0xA100), (0xAC00, 0xAD00),
              (0xFB00, 0xFC00), (0xFE00, 0xFF00), (0xFF00, 0xFFF0), (0x10400, 0x10500), (0x1D400, 0x1D500),
              (0x1F300, 0x1F400), (0x1F600, 0x1F700), (0x1F900, 0x1FA00), (0x20000, 0x20080)]
    out = []
    for lo, hi in blocks:
        chars = [chr(c) for c in range(lo, hi) if not (0xD800 <= c < 0xE000)]
        step = 48
        for k in range(0, len(chars), step):
            chunk = chars[k:k + step]
            # Interleave with ASCII context: " x", digits, apostrophes, newlines.
            s = ""
            for j, ch in enumerate(chunk):
                s += ch
                if j % 7 == 3:
                    s += " "
                if j % 11 == 5:
                    s += "a"
                if j % 13 == 8:
                    s += "1"
                if j % 17 == 9:
                    s += "'s"
                if j % 19 == 2:
                    s += "\n"
            out.append(s)
    return out


def dataset_lines():
    out = []
    with open(os.path.join(DATASETS, "oa_questions.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows[::12]:
        out.append(r["input"])
        out.append(r["output"])
    with open(os.path.join(DATASETS, "vicuna_questions.jsonl"), encoding="utf-8") as f:
        out += [json.loads(line)["text"] for line in f if line.strip()]
    with open(os.path.join(DATASETS, "mmlu_zero_shot_val.json"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out += [r["input"] for r in rows[::40]]
    return out


def main():
    tok = load_tokenizer()
    texts = HANDWRITTEN + unicode_sweeps() + dataset_lines()
    cases = []
    for t in texts:
        ids = tok(t, add_special_tokens=False).input_ids
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    golden = json.load(open(os.path.join(ROOT, "Tests", "Fixtures", "smollm2", "tokenizer_golden.json"), encoding="utf-8"))
    for g in golden if len(sys.argv) <= 2 else []:   # the SmolLM2 goldens hold for SmolLM2 only
        assert tok(g["text"], add_special_tokens=False).input_ids == g["ids"], g["text"]
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("[\n")
        for k, c in enumerate(cases):
            f.write(json.dumps(c, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if k + 1 < len(cases) else "\n")
        f.write("]\n")
    name = os.path.basename(OUT)
    write_metadata(os.path.dirname(os.path.abspath(OUT)), __file__, [name],
                   file_name=os.path.splitext(name)[0] + ".metadata.json",
                   arguments=[os.path.basename(GGUF), os.path.relpath(os.path.abspath(OUT), ROOT)][:len(sys.argv) - 1],
                   model=os.path.basename(GGUF), model_sha256=sha256(GGUF))
    n_ids = sum(len(c["ids"]) for c in cases)
    n_bytes = sum(len(c["text"].encode()) for c in cases)
    print(f"wrote {len(cases)} cases, {n_ids} ids, {n_bytes} bytes of text to {OUT}")


if __name__ == "__main__":
    main()
