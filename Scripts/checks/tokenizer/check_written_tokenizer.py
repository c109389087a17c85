"""Checks tokenizer.json / tokenizer_config.json files written by FinchTokenizer with HF.

Write them first (from the repository root):
    FINCH_WRITE_TOKENIZER_DIR=/tmp/finch-tok swift test --filter TokenizerJSONRoundTripTests/testWriteForPythonCheck
then:
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/checks/tokenizer/check_written_tokenizer.py /tmp/finch-tok

Loads the SmolLM2 files with `tokenizers.Tokenizer.from_file` and with transformers'
`AutoTokenizer.from_pretrained`, and compares ids and decoded text with Tests/Fixtures/tokenizer/corpus.json
(ids made by transformers from the GGUF); then the tiny-* directories against tiny_cases.json.
"""
import json
import os
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")


def main(d):
    corpus = json.load(open(os.path.join(FIX, "corpus.json"), encoding="utf-8"))
    raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(d)
    bad = 0
    for c in corpus:
        a = raw.encode(c["text"], add_special_tokens=False).ids
        b = hf(c["text"], add_special_tokens=False).input_ids
        if a != c["ids"] or b != c["ids"] or hf.decode(c["ids"]) != c["decoded"]:
            bad += 1
            if bad < 5:
                print("MISMATCH", repr(c["text"])[:80])
    print(f"SmolLM2: {len(corpus) - bad}/{len(corpus)} corpus strings identical (tokenizers and transformers)")
    chat = [{"role": "user", "content": "What is LoRA in one sentence?"}]
    print("chat template:", repr(hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))[:120])
    print("special tokens:", hf.special_tokens_map, "bos id", hf.bos_token_id, "eos id", hf.eos_token_id)

    cases = json.load(open(os.path.join(FIX, "tiny_cases.json"), encoding="utf-8"))
    for name, items in cases.items():
        sub = os.path.join(d, "tiny-" + name)
        if not os.path.isdir(sub):
            continue
        t = Tokenizer.from_file(os.path.join(sub, "tokenizer.json"))
        wrong = sum(1 for c in items if t.encode(c["text"], add_special_tokens=False).ids != c["ids"]
                    or t.encode(c["text"], add_special_tokens=True).ids != c["ids_special"]
                    or t.decode(c["ids"], skip_special_tokens=False) != c["decoded"])
        print(f"tiny-{name}: {len(items) - wrong}/{len(items)} identical")
        bad += wrong
    return bad


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/finch-tok") else 0)
