"""Training-step throughput of PyTorch + PEFT (+ bitsandbytes) on CPU: the baseline Finch is measured against.

    "$VENV"/bin/python Scripts/reference/bench_peft.py --model DIR --targets all --r 16 [--ckpt] [--bf16] [--qlora]
        [--batch 4 --seq 256 --steps 6 --threads 2]
DIR is a float32 Hugging Face directory (Scripts/reference/env.sh makes SmolLM2's: $SMOLLM2_F32). B x T random
token ids (labels = inputs), AdamW lr 2e-4, LoRA dropout 0.05, alpha = 2r. Prints one JSON line: tokens/s (median
over the steps after 2 warm-ups), s/step, peak RSS MiB, trainable parameters, the first loss, torch's version.
Scripts/bench/bench_train_vs_peft.sh, bench_qlora_vs_peft.sh, bench_gemma3_vs_peft.sh and
Scripts/scale/scale_vs_peft.sh run it next to `finch bench train`, which mirrors it.
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
p.add_argument("--bf16", action="store_true", help="bf16 autocast")
p.add_argument("--qlora", action="store_true", help="NF4 + double quant base via bitsandbytes")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

kw = {"dtype": torch.float32}
if a.qlora:
    from transformers import BitsAndBytesConfig
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16 if a.bf16 else torch.float32)
    kw["device_map"] = "cpu"
model = AutoModelForCausalLM.from_pretrained(a.model, **kw)
if a.qlora:
    from peft import prepare_model_for_kbit_training
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=a.ckpt)
targets = ["q_proj", "v_proj"] if a.targets == "qv" else "all-linear"
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=2 * a.r, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM"))
if a.ckpt and not a.qlora:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4)
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq), generator=g)
times, losses = [], []
for step in range(a.steps + 2):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16 and not a.qlora):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t
    losses.append(loss.item())
    if step >= 2:
        times.append(dt)
med = statistics.median(times)
trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
print(json.dumps({"config": vars(a) | {"model": os.path.basename(os.path.normpath(a.model))}, "tokens_per_s": round(a.batch * a.seq / med, 1),
                  "s_per_step": round(med, 3), "min_s": round(min(times), 3), "max_s": round(max(times), 3),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "trainable_params": trainable,
                  "first_loss": round(losses[0], 4), "torch": torch.__version__}))
