"""Inference baseline: transformers on CPU: prefill of a 512-token prompt and greedy decode of 128 tokens, batch 1.

    "$VENV"/bin/python Scripts/reference/bench_infer.py --model DIR [--bf16] [--threads 2]
DIR is a float32 Hugging Face directory (Scripts/reference/env.sh makes SmolLM2's: $SMOLLM2_F32). Prefill: median
of 3 runs after a warm-up; decode: 128 tokens from a 16-token prompt, median of 2 after a warm-up. Prints one JSON
line (with the dtypes of the tensors: --bf16 loads every weight in bf16, norms included; Finch keeps its norms
in f32). Scripts/bench/bench_generate_vs_transformers.sh runs it next to `finch bench generate`, which mirrors it.
"""
import argparse, json, resource, statistics, time
import torch
from transformers import AutoModelForCausalLM
p = argparse.ArgumentParser()
p.add_argument("--model", required=True, help="float32 Hugging Face directory")
p.add_argument("--bf16", action="store_true")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if a.bf16 else torch.float32).eval()
g = torch.Generator().manual_seed(3)
ids = torch.randint(100, 40000, (1, 512), generator=g)
pre, dec = [], []
with torch.no_grad():
    for i in range(4):
        t = time.perf_counter(); model(ids); pre.append(time.perf_counter() - t)
    for i in range(3):
        short = ids[:, :16]
        t = time.perf_counter()
        model.generate(short, attention_mask=torch.ones_like(short), max_new_tokens=128, min_new_tokens=128, do_sample=False)
        dec.append(time.perf_counter() - t)
dt = "bf16" if a.bf16 else "f32"
import transformers
print(json.dumps({"dtype": dt, "threads": a.threads,
                  "tensor_dtypes": {"linears": dt, "embedding_head": dt, "norms": dt, "autocast": False},
                  "versions": {"torch": torch.__version__, "transformers": transformers.__version__}, "prefill512_tok_s": round(512 / statistics.median(pre[1:]), 1),
                  "decode128_tok_s": round(128 / statistics.median(dec[1:]), 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
