"""llama.cpp (llama-cpp-python) on a GGUF (SmolLM2 Q4_1, Gemma 3 Q4_K_M): prefill of 512 tokens and greedy decode of 128, batch 1.

    "$VENV"/bin/python Scripts/reference/bench_llamacpp.py --gguf FILE [--threads 2]
FILE is SmolLM2's GGUF as shipped (Scripts/fetch-model.sh smollm2-135m). llama-cpp-python is not in the reference
venv (it builds llama.cpp from source, ~15 minutes on 2 cores):
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV"/bin/pip install llama-cpp-python==0.3.36
Prints one JSON line. Scripts/bench/bench_4bit_vs_llamacpp.sh runs it next to `finch bench generate --quantize nf4`.
"""
import argparse, json, os, random, resource, statistics, time
import llama_cpp
from llama_cpp import Llama
p = argparse.ArgumentParser()
p.add_argument("--gguf", required=True)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
llm = Llama(model_path=a.gguf, n_ctx=1024, n_threads=a.threads, n_threads_batch=a.threads, n_batch=512, verbose=False, seed=0)
rng = random.Random(3)
ids = [rng.randint(100, 40000) for _ in range(512)]
pre, dec = [], []
for i in range(4):
    llm.reset(); t = time.perf_counter(); llm.eval(ids); pre.append(time.perf_counter() - t)
for i in range(3):
    llm.reset(); llm.eval(ids[:16]); n = 0; t = time.perf_counter()
    for tok in llm.generate(ids[:16], temp=0.0, reset=False):
        n += 1
        if n == 128: break
    dec.append(time.perf_counter() - t)
print(json.dumps({"engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", "weights": "as stored in " + os.path.basename(a.gguf),
                  "prefill512_tok_s": round(512 / statistics.median(pre[1:]), 1),
                  "decode128_tok_s": round(128 / statistics.median(dec[1:]), 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
