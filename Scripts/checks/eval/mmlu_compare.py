"""Compares Finch's MMLU predictions with the transformers reference (see mmlu_check.sh).
Prints one JSON line per style; exits 1 if a prediction differs outside a near-tie or the
subject means differ."""
import json
import sys

out, cpu = sys.argv[1], sys.argv[2]
ref = json.load(open(f"{out}/reference.json"))
ok = True
for style, key in (("qlora", "scores"), ("harness", "logliks")):
    fin = [json.loads(l) for l in open(f"{out}/finch-{style}.jsonl")]
    summary = json.load(open(f"{out}/finch-{style}.json"))
    assert len(fin) == len(ref["items"])
    differ, max_diff = [], 0.0
    for i, (r, f) in enumerate(zip(ref["items"], fin)):
        rs = r[style][key]
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(rs, f["scores"])))
        if r[style]["prediction"] != f["prediction"]:
            top = sorted(rs, reverse=True)
            differ.append({"index": i, "reference": r[style]["prediction"], "finch": f["prediction"], "margin": top[0] - top[1]})
    ref_acc = ref[f"{style}_accuracy"]
    line = {"style": style, "items": len(fin), "cpu": cpu, "predictions_differ": len(differ), "differ": differ,
            "max_abs_score_diff": max_diff,
            "finch_subject_mean": summary["accuracy_subject_mean"], "reference_subject_mean": ref_acc["subject_mean"],
            "finch_item_accuracy": summary["accuracy_items"], "reference_item_accuracy": ref_acc["item_mean"],
            "finch_items_per_s": round(summary["items_per_s"], 2), "reference_items_per_s": round(ref["items_per_s"][style], 2),
            "speedup": round(summary["items_per_s"] / ref["items_per_s"][style], 2)}
    if style == "qlora":
        line["finch_mmlu_loss"], line["reference_mmlu_loss"] = summary["mmlu_loss"], ref["qlora_loss"]
    print(json.dumps(line))
    if any(d["margin"] >= 1e-4 for d in differ) or (not differ and abs(line["finch_subject_mean"] - line["reference_subject_mean"]) > 1e-12):
        ok = False
sys.exit(0 if ok else 1)
