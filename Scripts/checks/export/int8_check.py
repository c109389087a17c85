"""Compares Finch's LLM.int8 SmolLM2 with transformers + bitsandbytes load_in_8bit on the CPU.

Usage: int8_check.py F32_MODEL_DIR OUT   (OUT holds int8-<i>-t<T>/ checkpoints and check-<i>-t<T>.safetensors
from `finch quantize --quantize int8 --save-check`). Prints one JSON line per check; exits non-zero
when an int8 code or scale differs, when Finch's checkpoint loaded by transformers computes other
logits, or when the next token differs.

LLM.int8 rounds every activation row to int8 codes and picks outlier columns by a threshold: a
discontinuous function of its input. Two correct implementations whose f32 arithmetic differs in
the last bit (summation order in attention and products) round an occasional activation to the
neighbouring code, and SmolLM2's massive activations carry such a step on to the logits. So the
logits are compared with that sensitivity measured on bitsandbytes itself: the same model run
with its input embeddings moved by 1e-6 relative (a few f32 roundings), eight draws; the check
asks the same next token everywhere. Finch's products are
checked exactly per layer elsewhere (Tests/FinchQuantTests/Int8Tests.swift: within 6e-8)."""
import glob, json, os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
import bitsandbytes, transformers

model_dir, out = sys.argv[1], sys.argv[2]
refs = {}


def reference(threshold):
    if threshold not in refs:
        cfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=threshold)
        refs[threshold] = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=cfg, device_map="cpu",
                                                               dtype=torch.float32).eval()
    return refs[threshold]


f32 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
failed = False
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "bitsandbytes": bitsandbytes.__version__}))
for check in sorted(glob.glob(os.path.join(out, "check-*.safetensors"))):
    i = check[len(os.path.join(out, "check-")):-len(".safetensors")]
    threshold = float(i.split("-t")[1])
    ref = reference(threshold)
    c = load_file(check)
    ids = c["input_ids"].unsqueeze(0)
    with torch.no_grad():
        theirs = ref(ids).logits[0].float()
        base = f32(ids).logits[0].float()
    mine = c["logits.model"]
    # bitsandbytes against itself with its embeddings perturbed by ~1 f32 rounding.
    emb = ref.get_input_embeddings()(ids)
    self_noise = []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            noisy = ref(inputs_embeds=emb * (1 + 1e-6 * torch.randn(emb.shape, generator=g))).logits[0].float()
        self_noise.append((noisy - theirs).abs().max().item())
    diff = (theirs - mine).abs().max().item()
    top1 = (theirs.argmax(-1) == mine.argmax(-1)).float().mean().item()
    ok = top1 == 1.0
    failed |= not ok
    print(json.dumps({"check": "logits vs transformers load_in_8bit", "run": i, "llm_int8_threshold": threshold, "tokens": ids.shape[1],
                      "max_abs_diff": diff, "top1_agreement": top1,
                      "bitsandbytes_vs_itself_with_1e-6_input_noise": self_noise,
                      "int8_vs_f32_max_abs_diff": (theirs - base).abs().max().item(), "ok": ok}))
    # Finch's checkpoint: codes and scales against bitsandbytes', then loaded by transformers.
    d = os.path.join(out, f"int8-{i}")
    saved = {}
    for st in glob.glob(os.path.join(d, "*.safetensors")):
        saved.update(load_file(st))
    sd = ref.state_dict()
    keys = [k for k in saved if k.endswith(".SCB") or saved[k].dtype == torch.int8]
    same = sum(1 for k in keys if k in sd and torch.equal(saved[k], sd[k].to(saved[k].device)))
    ok = same == len(keys) > 0
    failed |= not ok
    print(json.dumps({"check": "int8 weights and SCB vs bitsandbytes", "tensors": len(keys), "identical": same, "ok": ok}))
    again = AutoModelForCausalLM.from_pretrained(d, device_map="cpu", dtype=torch.float32).eval()
    with torch.no_grad():
        back = again(ids).logits[0].float()
    diff = (back - theirs).abs().max().item()
    ok = diff == 0
    failed |= not ok
    print(json.dumps({"check": "Finch's int8 checkpoint loaded by transformers", "max_abs_diff_vs_load_in_8bit": diff, "ok": ok}))
sys.exit(1 if failed else 0)
