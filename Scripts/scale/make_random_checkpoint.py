"""Writes a random-weight Hugging Face checkpoint of a given shape, shard by shard (never the
whole model in memory), for memory and speed measurements of models too big to download here.

Shapes: smollm2-135m, smollm2-1.7b (LlamaForCausalLM, tied embeddings), llama2-7b (Llama-2-7B:
hidden 4096, MLP 11008, 32 layers, 32 heads), mistral-7b (Mistral-7B: MLP 14336, 8 KV heads).
Every shape uses SmolLM2's tokenizer (copied from TOKENIZER_DIR), so the vocabulary is 49152
tokens instead of Llama's 32000 (the 7B embeddings are 4096 x 49152: 67M more parameters than
the real model, counted in every figure). Values: N(0, 0.02) in bf16 (norm weights 1).

Usage: VENV/bin/python Scripts/scale/make_random_checkpoint.py SHAPE OUT_DIR TOKENIZER_DIR [--shard-gb 2]
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file

SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, tie_word_embeddings=True, arch="LlamaForCausalLM", model_type="llama",
                         rope_theta=100000.0, max_position_embeddings=8192),
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, tie_word_embeddings=True, arch="LlamaForCausalLM", model_type="llama",
                         rope_theta=130000.0, max_position_embeddings=8192),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, tie_word_embeddings=False, arch="LlamaForCausalLM", model_type="llama",
                      rope_theta=10000.0, max_position_embeddings=4096),
    "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, tie_word_embeddings=False, arch="MistralForCausalLM", model_type="mistral",
                       rope_theta=10000.0, max_position_embeddings=32768, sliding_window=None),
}

ap = argparse.ArgumentParser()
ap.add_argument("shape", choices=sorted(SHAPES))
ap.add_argument("out")
ap.add_argument("tokenizer_dir")
ap.add_argument("--shard-gb", type=float, default=2.0)
args = ap.parse_args()
s = dict(SHAPES[args.shape])
arch, model_type = s.pop("arch"), s.pop("model_type")
vocab = 49152
h, inter, L = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
heads, kv = s["num_attention_heads"], s["num_key_value_heads"]
d = h // heads

os.makedirs(args.out, exist_ok=True)
config = dict(architectures=[arch], model_type=model_type, vocab_size=vocab, hidden_act="silu", rms_norm_eps=1e-5,
              bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16", attention_bias=False, mlp_bias=False,
              head_dim=d, initializer_range=0.02, **s)
if model_type == "llama":
    config["rope_scaling"] = None
json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):   # transformers 5 writes the template apart
    if f != "chat_template.jinja" or os.path.exists(os.path.join(args.tokenizer_dir, f)):
        shutil.copy(os.path.join(args.tokenizer_dir, f), os.path.join(args.out, f))


def tensors():
    """(name, shape) in the order transformers lists them."""
    yield "model.embed_tokens.weight", (vocab, h)
    for i in range(L):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,)
        for n, shape in [("q_proj", (heads * d, h)), ("k_proj", (kv * d, h)), ("v_proj", (kv * d, h)), ("o_proj", (h, heads * d))]:
            yield p + f"self_attn.{n}.weight", shape
        yield p + "post_attention_layernorm.weight", (h,)
        for n, shape in [("gate_proj", (inter, h)), ("up_proj", (inter, h)), ("down_proj", (h, inter))]:
            yield p + f"mlp.{n}.weight", shape
    yield "model.norm.weight", (h,)
    if not s["tie_word_embeddings"]:
        yield "lm_head.weight", (vocab, h)


gen = torch.Generator().manual_seed(0)
limit = int(args.shard_gb * (1 << 30))
shards, current, size = [], {}, 0
for name, shape in tensors():
    t = torch.ones(shape, dtype=torch.bfloat16) if name.endswith("norm.weight") else \
        (torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)
    nbytes = t.numel() * 2
    if current and size + nbytes > limit:
        shards.append(current); current, size = {}, 0
        path = os.path.join(args.out, f"part-{len(shards):05d}.safetensors")
        save_file(shards[-1], path, metadata={"format": "pt"})
        shards[-1] = list(shards[-1].keys())   # drop the tensors: only names are kept
    current[name] = t
    size += nbytes
shards.append(current)
save_file(current, os.path.join(args.out, f"part-{len(shards):05d}.safetensors"), metadata={"format": "pt"})
shards[-1] = list(current.keys())
n = len(shards)
weight_map, total = {}, 0
for i, names in enumerate(shards):
    final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
    os.rename(os.path.join(args.out, f"part-{i + 1:05d}.safetensors"), os.path.join(args.out, final))
    for name in names:
        weight_map[name] = final
for name, shape in tensors():
    c = 1
    for x in shape:
        c *= x
    total += 2 * c
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
          open(os.path.join(args.out, "model.safetensors.index.json"), "w"), indent=2)
print(json.dumps({"shape": args.shape, "shards": n, "bytes": total, "parameters": total // 2}))
