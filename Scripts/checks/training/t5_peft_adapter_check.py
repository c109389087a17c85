"""Checks that PEFT loads a T5 adapter Finch trained and computes Finch's logits with it.

  finch train --model Tests/Fixtures/tiny-t5/v1_1/hf --data Examples/brindlewick-pairs.jsonl --output RUN ...
  finch merge --model Tests/Fixtures/tiny-t5/v1_1/hf --adapter RUN --output MERGED --save-check CHECK.safetensors
  python Scripts/checks/training/t5_peft_adapter_check.py BASE RUN MERGED CHECK.safetensors

`finch merge --save-check` writes the check prompt's decoder ids and Finch's teacher-forced logits with the
adapter; this script runs transformers + PEFT on the same ids (PeftModel.from_pretrained on RUN) and
transformers alone on the merged directory, and prints the largest differences as one JSON line.
Needs torch, transformers, peft, safetensors (made with transformers 5.24, peft 0.21.2).
"""
import json, sys
import torch, transformers, peft
from safetensors import safe_open

base, run, merged, check = sys.argv[1:5]
f = safe_open(check, "pt")
meta = f.metadata()
source = torch.tensor([[int(t) for t in meta["source_tokens"].split()]])
dec = f.get_tensor("input_ids").long()[None, :]
want = f.get_tensor("logits.adapter")
m = transformers.T5ForConditionalGeneration.from_pretrained(base).eval()
pm = peft.PeftModel.from_pretrained(m, run).eval()
with torch.no_grad():
    got = pm(input_ids=source, decoder_input_ids=dec).logits[0]
    mm = transformers.T5ForConditionalGeneration.from_pretrained(merged).eval()
    got_merged = mm(input_ids=source, decoder_input_ids=dec).logits[0]
res = {"check": "T5 adapter trained by Finch, loaded by PEFT", "peft_class": type(pm).__name__,
       "max_abs_diff_peft": float((got - want).abs().max()), "max_abs_diff_merged_transformers": float((got_merged - want).abs().max()),
       "logit_scale": float(want.abs().max())}
res["ok"] = res["max_abs_diff_peft"] < 1e-4 and res["max_abs_diff_merged_transformers"] < 1e-4
print(json.dumps(res))
sys.exit(0 if res["ok"] else 1)
