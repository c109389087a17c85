#!/usr/bin/env python3
"""Check that a `finch merge` output loads in transformers and computes Finch's logits.

Runs `finch merge` (base model + PEFT adapter -> Hugging Face directory) with a chat-formatted
self-check prompt whose token ids and logits Finch saves, then loads the directory with
`AutoModelForCausalLM.from_pretrained` + `AutoTokenizer` and reports:

  * whether transformers' tokenizer (chat template + encoding) gives Finch's ids for the prompt,
    and whether it re-encodes the decoded PEFT golden chat prompt to the same ids;
  * max |logit diff| between transformers on the merged directory and Finch's adapter model
    (unmerged, base + B·A at run time) and Finch's reload of the exported directory;
  * with --golden-dir, max |logit diff| against PEFT's golden logits (base + adapter in PEFT).

A manual check (it needs torch + transformers); not part of the test suite.

Usage:
    swift build -c release
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/checks/export/merge_vs_transformers.py \\
        --finch .build/release/finch \\
        --model "$(Scripts/fetch-model.sh smollm2-135m)" \\
        --adapter Tests/Fixtures/smollm2/peft/lora_all_linear_r8 \\
        [--out /tmp/finch-merged] [--dtype f32|bf16|f16] [--golden-dir ADAPTER_DIR] [--tolerance 1e-3]

Exits non-zero when the ids differ or the f32 logit difference exceeds --tolerance.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = "Write a haiku about merging LoRA adapters into a base model."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finch", default=".build/release/finch", help="the finch binary")
    ap.add_argument("--model", required=True, help="base model (GGUF, HF directory or known name)")
    ap.add_argument("--adapter", required=True, help="PEFT adapter directory")
    ap.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--golden-dir", default=None,
                    help="directory with golden.json + golden.safetensors from PEFT (default: --adapter if it has them)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max allowed |logit diff| for f32 exports")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="finch-merge-check-")
    try:
        return check(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the check file, and the merged model unless --out


def check(args, work: str) -> int:
    out = args.out or os.path.join(work, "merged")
    check = os.path.join(work, "finch_check.safetensors")
    cmd = [args.finch, "merge", "--model", args.model, "--adapter", args.adapter, "--output", out,
           "--dtype", args.dtype, "--overwrite", "--check-prompt", PROMPT, "--check-chat", "--save-check", check]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)

    finch = load_file(check)
    finch_ids = finch["input_ids"].tolist()

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.eval()

    ok = True
    hf_ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=True)
    if hasattr(hf_ids, "keys"):  # transformers >= 5 returns a BatchEncoding
        hf_ids = hf_ids["input_ids"]
    same = list(hf_ids) == finch_ids
    ok &= same
    print(f"chat prompt: {len(finch_ids)} tokens; transformers ids == Finch ids: {same}")
    if not same:
        print("  finch:       ", finch_ids)
        print("  transformers:", list(hf_ids))

    with torch.no_grad():
        logits = model(torch.tensor([finch_ids])).logits[0].float()
    for key in ["logits.adapter", "logits.exported"]:
        d = (logits - finch[key]).abs().max().item()
        print(f"max |logit diff| transformers(merged dir) vs Finch {key.split('.')[1]}: {d:.3g}")
        if args.dtype == "f32":
            ok &= d <= args.tolerance

    golden_dir = args.golden_dir or args.adapter
    gj, gs = os.path.join(golden_dir, "golden.json"), os.path.join(golden_dir, "golden.safetensors")
    if os.path.exists(gj) and os.path.exists(gs):
        import json
        chat_ids = json.load(open(gj))["chat_ids"]
        golden = load_file(gs)["chat.logits.adapter"].reshape(len(chat_ids), -1)
        reencoded = tok(tok.decode(chat_ids), add_special_tokens=False)["input_ids"]
        same = reencoded == chat_ids
        ok &= same
        print(f"golden chat prompt ({len(chat_ids)} tokens) decodes and re-encodes to the same ids: {same}")
        with torch.no_grad():
            g = model(torch.tensor([chat_ids])).logits[0].float()
        print(f"max |logit diff| transformers(merged dir) vs PEFT golden (base + adapter): {(g - golden).abs().max().item():.3g}")

    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
