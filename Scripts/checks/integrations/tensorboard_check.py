"""TensorBoard's own reader (EventAccumulator, the tensorboard package) against a Finch run directory:
every scalar of metrics.jsonl under the tag transformers gives it (train/loss, train/learning_rate,
eval/loss, eval/perplexity, ...), at the same steps with the same values (as float32), no other
step; the run's settings as the text "args" equal to train_config.json. Exits non-zero on any difference.

    python tensorboard_check.py RUN_DIR
"""
import json
import os
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def expected(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            step, is_eval = o.pop("step"), "eval_tokens" in o
            for k, v in o.items():
                if not isinstance(v, (int, float)):
                    continue
                if is_eval:
                    name = "eval/" + ("perplexity" if k == "eval_ppl" else k[5:] if k.startswith("eval_") else k)
                else:
                    name = "train/" + ("learning_rate" if k == "lr" else k)
                out.setdefault(name, {})[step] = float(np.float32(v))
    return out


def main():
    run = sys.argv[1]
    acc = EventAccumulator(os.path.join(run, "runs"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    want = expected(run)
    got = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    problems = []
    for tag in sorted(set(want) | set(got)):
        w, g = want.get(tag), got.get(tag)
        if w is None or g is None:
            problems.append(f"{tag}: only in {'the event files' if w is None else 'metrics.jsonl'}")
        elif sorted(w) != sorted(g):
            problems.append(f"{tag}: steps {sorted(g)} in TensorBoard, {sorted(w)} in metrics.jsonl")
        else:
            bad = [(s, g[s], w[s]) for s in w if g[s] != w[s]]
            if bad:
                problems.append(f"{tag}: {len(bad)} values differ, first {bad[0]}")
    args = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("args")]
    with open(os.path.join(run, "train_config.json"), encoding="utf-8") as f:
        if not args or args[-1] != f.read():
            problems.append("the text 'args' is not train_config.json")
    steps = max((max(v) for v in want.values()), default=0)
    print(json.dumps({"check": "tensorboard", "run": run, "tags": len(got), "last_step": steps,
                      "points": sum(len(v) for v in got.values()), "problems": problems}))
    if problems or not want:
        sys.exit(1)


if __name__ == "__main__":
    main()
