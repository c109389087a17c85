"""transformers' float32 Hugging Face copy of SmolLM2-135M-Instruct, for the reference benchmarks and checks.

Loads the Q4_1 GGUF (Scripts/fetch-model.sh smollm2-135m) in transformers, which dequantizes it to float32
with gguf-py, and saves it as a plain Hugging Face directory (config.json, model.safetensors,
generation_config.json, tokenizer files): the weights PyTorch, PEFT, bitsandbytes and lm-eval load in the
side-by-side benchmarks, and Finch too (`--model DIR`), so both read the same values. About 540 MB, made once
into a cache outside the repository (Scripts/reference/env.sh: $WORK/models/smollm2-f32).
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/reference/make_smollm2_f32.py OUT_DIR [GGUF]
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = sys.argv[1]
gguf = sys.argv[2] if len(sys.argv) > 2 else subprocess.run(
    [os.path.join(ROOT, "Scripts", "fetch-model.sh"), "smollm2-135m"], check=True, capture_output=True, text=True
).stdout.strip().splitlines()[-1]
d, f = os.path.dirname(gguf), os.path.basename(gguf)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
# A model loaded from a GGUF refuses save_pretrained: copy its weights into a plain model of the same config.
cfg = model.config
if hasattr(cfg, "quantization_config"):
    del cfg.quantization_config
plain = type(model)(cfg)
plain.load_state_dict(model.state_dict())
tmp = out + ".part"
plain.save_pretrained(tmp)
model.generation_config.save_pretrained(tmp)
tok.save_pretrained(tmp)
with open(os.path.join(tmp, "finch_source.json"), "w") as fh:
    json.dump({"made_by": "Scripts/reference/make_smollm2_f32.py", "gguf": f,
               "torch": torch.__version__, "transformers": __import__("transformers").__version__}, fh, indent=1)
if os.path.exists(out):
    import shutil
    shutil.rmtree(out)
os.rename(tmp, out)
print(out)
