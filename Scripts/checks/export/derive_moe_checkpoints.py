"""Mixture-of-experts checkpoints llama.cpp's architectures can hold, derived from the tiny test fixtures with
numpy and the safetensors format alone (run by llamacpp_check.sh in the llama-cpp venv, which has no transformers):

  derive_moe_checkpoints.py qwen2_moe SRC DST   Qwen2-MoE with experts in every layer (llama.cpp's qwen2moe has no
                                                dense layer): the tiny model's sparse layers 0 and 2, as layers 0, 1
  derive_moe_checkpoints.py olmoe SRC DST       OLMoE with as many key/value heads as query heads (llama.cpp's olmoe
                                                normalizes k over the hidden size): each key/value head repeated for
                                                the query heads that share it, and the k norm's weight with it; RMS
                                                over the repeated projection equals RMS over the original, so the
                                                model computes what the fixture does
"""
import json, os, shutil, struct, sys
import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16}


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], DTYPES[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items()}


def write(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], np.float32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main(kind, src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=True)
    cfg = json.load(open(os.path.join(src, "config.json")))
    t = read(os.path.join(src, "model.safetensors"))
    if kind == "qwen2_moe":
        keep = [i for i in range(cfg["num_hidden_layers"]) if i not in cfg.get("mlp_only_layers", [])]
        out = {k: v for k, v in t.items() if not k.startswith("model.layers.")}
        for new, old in enumerate(keep):
            p = f"model.layers.{old}."
            out.update({f"model.layers.{new}." + k[len(p):]: v for k, v in t.items() if k.startswith(p)})
        cfg.update(num_hidden_layers=len(keep), mlp_only_layers=[], layer_types=["full_attention"] * len(keep))
    elif kind == "olmoe":
        heads, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
        rows = np.concatenate([np.arange(h // (heads // kv) * d, (h // (heads // kv) + 1) * d) for h in range(heads)])
        out = dict(t)
        for k, v in t.items():
            if k.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.k_norm.weight")):
                out[k] = v[rows]
        cfg.update(num_key_value_heads=heads)
    else:
        raise SystemExit(f"derive_moe_checkpoints.py: unknown kind {kind!r} (qwen2_moe or olmoe)")
    write(os.path.join(dst, "model.safetensors"), out)
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
