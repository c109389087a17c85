"""Training-step throughput of PyTorch + PEFT (+ bitsandbytes) on CPU: the baseline Finch is measured against.

    "$VENV"/bin/python Scripts/reference/bench_peft.py --model DIR --targets all --r 16 [--ckpt] [--bf16 | --bf16-autocast]
        [--qlora] [--batch 4 --seq 256 --steps 6 --threads 2]
DIR is a float32 Hugging Face directory (Scripts/reference/env.sh makes SmolLM2's: $SMOLLM2_F32). B x T random
token ids (labels = inputs), AdamW lr 2e-4, LoRA dropout 0.05, alpha = 2r. Prints one JSON line: tokens/s (median
over the steps after 2 warm-ups), s/step, peak RSS MiB, trainable parameters, the first loss, the versions of torch,
transformers, peft (and bitsandbytes), and the dtype every kind of tensor had while it ran ("tensor_dtypes").

Precision, like `finch bench train --dtype`:
  (default)        everything f32.
  --bf16           the model loaded in bf16 (torch_dtype=torch.bfloat16: linears, embeddings, tied head, norms),
                   LoRA A/B in f32 (PEFT's autocast_adapter_dtype, as Finch keeps them), no autocast. Finch's
                   norms stay f32; PyTorch's must be bf16 here (a f32 norm output would meet a bf16 Linear).
  --bf16 --qlora   block linears NF4 with bnb_4bit_compute_dtype bf16, the rest (embeddings, head, norms) loaded in
                   bf16 as Finch's `--qlora --dtype bf16` keeps them; prepare_model_for_kbit_training is not called
                   (it would cast them back to f32); base frozen, input grads enabled as it would.
  --bf16-autocast  the old variant: f32 weights with torch.autocast(bf16) (not like for like with Finch's bf16).
Scripts/bench/vs_reference.sh runs it next to `finch bench train`, which mirrors it (configs in
Scripts/bench/configs).
"""
import argparse, json, os, resource, statistics, time
import torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

p = argparse.ArgumentParser()
p.add_argument("--model", required=True, help="float32 Hugging Face directory")
p.add_argument("--targets", default="all", choices=["qv", "all"])
p.add_argument("--r", type=int, default=16)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--steps", type=int, default=6)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ckpt", action="store_true", help="gradient checkpointing")
p.add_argument("--bf16", action="store_true", help="model loaded in bf16, LoRA in f32, no autocast (like Finch's --dtype bf16)")
p.add_argument("--bf16-autocast", action="store_true", help="old variant: f32 weights under bf16 autocast")
p.add_argument("--qlora", action="store_true", help="NF4 + double quant base via bitsandbytes")
a = p.parse_args()
if a.bf16 and a.bf16_autocast:
    p.error("--bf16 or --bf16-autocast, not both")
if a.qlora and a.bf16_autocast:
    p.error("--bf16-autocast is for LoRA only (QLoRA: --bf16)")
torch.set_num_threads(a.threads)
torch.manual_seed(0)

kw = {"dtype": torch.bfloat16 if a.bf16 else torch.float32}
if a.qlora:
    from transformers import BitsAndBytesConfig
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16 if a.bf16 else torch.float32)
    kw["device_map"] = "cpu"
model = AutoModelForCausalLM.from_pretrained(a.model, **kw)
kbit_prepared = a.qlora and not a.bf16
if kbit_prepared:
    from peft import prepare_model_for_kbit_training
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=a.ckpt)
else:
    for q in model.parameters():
        q.requires_grad = False
targets = ["q_proj", "v_proj"] if a.targets == "qv" else "all-linear"
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=2 * a.r, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM"),
                       autocast_adapter_dtype=True)
if a.ckpt and not kbit_prepared:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4)
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), generator=g)
times, losses = [], []
for step in range(a.steps + 2):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16_autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t
    losses.append(loss.item())
    if step >= 2:
        times.append(dt)
med = statistics.median(times)


def dtype_of(pred):
    for name, q in model.named_parameters():
        if pred(name):
            return "nf4" if q.__class__.__name__ == "Params4bit" else str(q.dtype).replace("torch.", "").replace("float32", "f32").replace("bfloat16", "bf16")
    return "none"


base = model.get_base_model()
lin = dtype_of(lambda n: "q_proj.base_layer.weight" in n)
if lin == "nf4":
    lin = f"nf4 (products in {'bf16' if a.bf16 else 'f32'})"
dtypes = {"linears": lin, "embedding_head": dtype_of(lambda n: "embed_tokens" in n),
          "lm_head": "tied" if base.lm_head.weight is base.get_input_embeddings().weight else str(base.lm_head.weight.dtype).replace("torch.", ""),
          "norms": dtype_of(lambda n: "norm" in n), "lora": dtype_of(lambda n: "lora_A" in n),
          "autocast": "bf16" if a.bf16_autocast else False}
import transformers, peft
vers = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
if a.qlora:
    import bitsandbytes
    vers["bitsandbytes"] = bitsandbytes.__version__
trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
print(json.dumps({"config": vars(a) | {"model": os.path.basename(os.path.normpath(a.model))}, "tokens_per_s": round(a.batch * a.seq / med, 1),
                  "s_per_step": round(med, 3), "min_s": round(min(times), 3), "max_s": round(max(times), 3),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "trainable_params": trainable,
                  "first_loss": round(losses[0], 4), "torch": torch.__version__, "versions": vers, "tensor_dtypes": dtypes,
                  "dtype": "bf16" if (a.bf16 or a.bf16_autocast) else "f32"}))
