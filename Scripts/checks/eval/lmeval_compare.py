"""Compares two lm-eval --log_samples runs of finch_mmlu_val100 item by item (Scripts/checks/eval/mmlu_check.sh serve)."""
import glob
import json
import sys


def load(run_dir):
    files = glob.glob(f"{run_dir}/**/samples_finch_mmlu_val100_*.jsonl", recursive=True)
    assert files, f"no samples under {run_dir}"
    items = {}
    for line in open(sorted(files)[-1]):
        s = json.loads(line)
        lls = [float(r[0][0]) for r in s["resps"]]
        items[s["doc_id"]] = (lls, s["target"], s["acc"])
    return items


finch, hf = load(sys.argv[1]), load(sys.argv[2])
assert finch.keys() == hf.keys(), "different items"
worst, differ = 0.0, []
for i in sorted(finch):
    a, b = finch[i][0], hf[i][0]
    worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
    ca, cb = a.index(max(a)), b.index(max(b))
    if ca != cb:
        gap = sorted(b, reverse=True)
        differ.append((i, ca, cb, gap[0] - gap[1]))
acc_f = sum(v[2] for v in finch.values()) / len(finch)
acc_h = sum(v[2] for v in hf.values()) / len(hf)
print(json.dumps({"items": len(finch), "accuracy_finch_serve": acc_f, "accuracy_hf": acc_h,
                  "choices_differ": len(differ), "max_abs_loglikelihood_diff": worst}))
for i, ca, cb, gap in differ:
    print(f"item {i}: finch picks {'ABCD'[ca]}, hf picks {'ABCD'[cb]} (hf's top-2 gap {gap:.2e})")
sys.exit(1 if differ else 0)
