#!/usr/bin/env python3
"""Check that adapters Finch trains with PEFT's extra kinds of state load in PEFT with Finch's logits: a
`modules_to_save` adapter (embed_tokens, lm_head), a `trainable_token_indices` one, and an OLoRA / PiSSA one (saved
converted to a plain LoRA on the original base), on the tiny llama (untied head) and qwen2 (tied) checkpoints; and a
LoftQ run on SmolLM2-135M (the quantized base Finch saves, in bitsandbytes' 4-bit layout, read by transformers +
bitsandbytes and dequantized, with the adapter on it).

For each: `finch train` (3 steps on Examples/brindlewick.jsonl), `finch merge --save-check` (Finch's adapter model's
logits on its self-check prompt), then `PeftModel.from_pretrained(base, adapter)` on the same ids; prints one JSON
line per case (max |logit diff| relative to the largest logit) and appends them to
Scripts/results/checks/peft-loads-finch-<date>.jsonl. A manual check (torch + PEFT); not part of the test suite.

Usage:
    swift build -c release
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/checks/training/peft_loads_finch.py [--finch .build/release/finch]

Exits non-zero when a difference exceeds --tolerance (default 1e-5).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import peft
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CASES = {
    "modules_to_save": ["--modules-to-save", "embed_tokens,lm_head"],
    "trainable_tokens": ["--trainable-token-indices", "1,17,42,300"],
    "olora": ["--init-lora-weights", "olora"],
    "pissa": ["--init-lora-weights", "pissa"],
    "eva": ["--init-lora-weights", "eva"],
    # Tokens added (ids 320, 321): the grown embedding and head saved with the adapter, the tokenizer beside it.
    "added_tokens": ["--add-special-tokens", "<|user|>,<|end|>"],
    "added_tokens_modules_to_save": ["--add-special-tokens", "<|user|>,<|end|>", "--modules-to-save", "embed_tokens,lm_head"],
    "added_tokens_trainable_tokens": ["--add-special-tokens", "<|user|>,<|end|>", "--trainable-token-indices", "320,321"],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--finch", default=os.path.join(ROOT, ".build", "release", "finch"))
    ap.add_argument("--tolerance", type=float, default=1e-5)
    ap.add_argument("--no-loftq", action="store_true", help="leave out the LoftQ run on SmolLM2 (a few minutes)")
    ap.add_argument("--loftq-tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    out_path = os.path.join(ROOT, "Scripts", "results", "checks", f"peft-loads-finch-{datetime.date.today().isoformat()}.jsonl")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    failed = False
    with tempfile.TemporaryDirectory() as tmp, open(out_path, "a") as out:
        for family in ["llama", "qwen2"]:
            base = os.path.join(ROOT, "Tests", "Fixtures", f"tiny-{family}", "hf")
            for case, flags in CASES.items():
                run = os.path.join(tmp, f"{family}-{case}")
                subprocess.run([args.finch, "train", "--model", base, "--data", os.path.join(ROOT, "Examples", "brindlewick.jsonl"),
                                "--max-steps", "3", "--max-seq-len", "256", "--learning-rate", "1e-2", "--lora-r", "4",
                                "--target-modules", "q_proj,v_proj", "--output", run] + flags, check=True, capture_output=True)
                check = os.path.join(tmp, f"{family}-{case}.safetensors")
                added = case.startswith("added_tokens")
                prompt = ["--check-prompt", "<|user|>Where is Brindlewick?<|end|>"] if added else []
                subprocess.run([args.finch, "merge", "--model", base, "--adapter", run, "--output", run + "-merged",
                                "--save-check", check] + prompt, check=True, capture_output=True)
                saved = load_file(check)
                hf = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
                if added:
                    hf.resize_token_embeddings(len(AutoTokenizer.from_pretrained(run)))
                    assert 320 in saved["input_ids"].tolist(), "the check prompt holds no added token"
                model = peft.PeftModel.from_pretrained(hf, run)
                model.eval()
                with torch.no_grad():
                    logits = model(saved["input_ids"][None]).logits[0]
                want = saved["logits.adapter"]
                rel = ((logits - want).abs().max() / want.abs().max()).item()
                line = {"check": "peft-loads-finch", "commit": commit, "family": family, "case": case, "logits_rel": rel,
                        "peft": peft.__version__, "torch": torch.__version__, "passed": rel <= args.tolerance}
                failed |= not line["passed"]
                print(json.dumps(line))
                out.write(json.dumps(line) + "\n")
        if not args.no_loftq:
            model_path = subprocess.run([os.path.join(ROOT, "Scripts", "fetch-model.sh"), "smollm2-135m"], check=True,
                                        capture_output=True, text=True).stdout.strip().splitlines()[-1]
            run = os.path.join(tmp, "smollm2-loftq")
            subprocess.run([args.finch, "train", "--model", model_path, "--data", os.path.join(ROOT, "Examples", "brindlewick.jsonl"),
                            "--max-steps", "3", "--max-seq-len", "256", "--quantize", "nf4", "--init-lora-weights", "loftq",
                            "--lora-r", "8", "--lora-alpha", "8", "--output", run], check=True, capture_output=True)
            base = os.path.join(run, "loftq-base")
            check = os.path.join(tmp, "smollm2-loftq.safetensors")
            subprocess.run([args.finch, "merge", "--model", base, "--adapter", run, "--output", run + "-merged",
                            "--save-check", check], check=True, capture_output=True)
            saved = load_file(check)
            # transformers + bitsandbytes read Finch's 4-bit checkpoint; its CPU 4-bit product runs in lower precision
            # (0.3% from x·deq(W)ᵀ here), so the read weights are dequantized (the same values, 1e-6) and the adapter
            # applied in f32, as Finch computes.
            quantized = AutoModelForCausalLM.from_pretrained(base)
            model = peft.PeftModel.from_pretrained(quantized.dequantize(), run)
            model.eval()
            with torch.no_grad():
                logits = model(saved["input_ids"][None]).logits[0].float()
            want = saved["logits.adapter"]
            rel = ((logits - want).abs().max() / want.abs().max()).item()
            line = {"check": "peft-loads-finch", "commit": commit, "family": "smollm2-135m", "case": "loftq-nf4", "logits_rel": rel,
                    "peft": peft.__version__, "torch": torch.__version__, "passed": rel <= args.loftq_tolerance}
            failed |= not line["passed"]
            print(json.dumps(line))
            out.write(json.dumps(line) + "\n")
    print(f"appended to {out_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
