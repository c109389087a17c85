#!/usr/bin/env python3
"""The llama.cpp half of Scripts/checks/training/added_tokens_check.sh (run by it, in the llama-cpp venv): reads the
run directory DIR it leaves (merged.gguf and the greedy answers base.jsonl, adapter.jsonl, merged.jsonl of Finch),
answers the same questions with llama-cpp-python's chat completion on merged.gguf (its own chat template and EOS,
greedy), prints one JSON line per check and appends them to Scripts/results/checks/added-tokens-<date>.jsonl.
Exits non-zero when a check fails.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MARKERS = {"<|end|>": 49152, "<|assistant|>": 49153, "<|system|>": 49154, "<|user|>": 49155}


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(d):
    rows = {k: [json.loads(l) for l in open(os.path.join(d, f"{k}.jsonl"))] for k in ["base", "adapter", "merged"]}
    common = {"commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
              "cpu": cpu(), "threads": os.cpu_count(), "llama_cpp_python": llama_cpp.__version__,
              "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}
    lines, failed = [], False
    llm = llama_cpp.Llama(model_path=os.path.join(d, "merged.gguf"), n_ctx=512, verbose=False, n_threads=os.cpu_count(),
                          type_k=0, type_v=0)
    ids = {m: llm.tokenize(m.encode(), add_bos=False, special=True) for m in MARKERS}
    ok = all(ids[m] == [i] for m, i in MARKERS.items()) and llm.token_eos() == MARKERS["<|end|>"]
    lines.append({"check": "markers are single tokens in llama.cpp", "ids": ids, "eos": llm.token_eos(), "ok": ok})
    failed |= not ok
    for base, adapter, merged in zip(rows["base"], rows["adapter"], rows["merged"]):
        q = adapter["prompt"]
        out = llm.create_chat_completion(messages=[{"role": "user", "content": q}], max_tokens=48, temperature=0.0,
                                         top_k=1, repeat_penalty=1.0)
        text, reason = out["choices"][0]["message"]["content"], out["choices"][0]["finish_reason"]
        ok = (adapter["finish_reason"] == "eos" and merged["finish_reason"] == "eos" and reason == "stop"
              and adapter["text"] == merged["text"] == text)
        failed |= not ok
        lines.append({"check": "greedy chat answer", "prompt": q, "finch_base_with_template": base["text"],
                      "finch_base_finish": base["finish_reason"],   # the base's own <|im_end|> also ends it "finch_adapter": adapter["text"],
                      "finch_adapter_finish": adapter["finish_reason"], "finch_merged_gguf": merged["text"],
                      "finch_merged_finish": merged["finish_reason"], "llama_cpp": text, "llama_cpp_finish": reason, "ok": ok})
    path = os.path.join(ROOT, "Scripts", "results", "checks", f"added-tokens-{datetime.date.today().isoformat()}.jsonl")
    with open(path, "a") as f:
        for line in lines:
            line = {**line, **common}
            print(json.dumps(line))
            f.write(json.dumps(line) + "\n")
    print(f"appended to {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
