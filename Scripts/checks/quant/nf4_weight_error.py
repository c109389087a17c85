"""How much NF4 changes SmolLM2's weights, and how much of that a rank-16 adapter could undo.

For a few linear layers: bitsandbytes' quantize_4bit (NF4 / FP4, double quantization) at
blocksize 32 / 64 / 128, the relative error ||W - dequant(Q(W))|| / ||W||, and the share of the
error's energy in its top 16 and 64 singular directions (what the best rank-r correction, e.g.
LoftQ-style adapter init, could remove at most).
  VENV/bin/python Scripts/checks/quant/nf4_weight_error.py MODEL_DIR   # f32 safetensors directory
"""
import glob
import json
import sys

import bitsandbytes.functional as F
import torch
from safetensors.torch import load_file

state = {}
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    state.update(load_file(f))
for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.10.mlp.down_proj.weight",
             "model.layers.20.mlp.gate_proj.weight", "model.layers.29.self_attn.v_proj.weight"]:
    w = state[name].float()
    for bs in (32, 64, 128):
        for kind in ("nf4", "fp4"):
            q, st = F.quantize_4bit(w, blocksize=bs, quant_type=kind, compress_statistics=True)
            r = w - F.dequantize_4bit(q, st)
            row = {"tensor": name, "shape": list(w.shape), "type": kind, "blocksize": bs,
                   "relative_error": round((r.norm() / w.norm()).item(), 4)}
            if bs == 64:
                e = torch.linalg.svdvals(r) ** 2
                e = e.cumsum(0) / e.sum()
                row["error_energy_top16"] = round(e[15].item(), 3)
                row["error_energy_top64"] = round(e[63].item(), 3)
            print(json.dumps(row))
