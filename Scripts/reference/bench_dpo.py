"""DPO training-step throughput of TRL's DPOTrainer + PEFT on CPU: the baseline `finch bench train --method dpo` is
measured against.

    "$VENV"/bin/python Scripts/reference/bench_dpo.py --model DIR --targets all --r 16 [--bf16] [--batch 4 --seq 256
        --steps 6 --threads 2]
DIR is a float32 Hugging Face directory (Scripts/reference/env.sh makes SmolLM2's: $SMOLLM2_F32). B pairs of random token
ids, each a prompt of T/2 tokens and two answers of T/2 (so each answer's sequence has T tokens); a new LoRA adapter
(peft_config: the reference is the base with the adapter disabled, as DPOTrainer does), alpha = 2r, TRL's defaults
otherwise (beta 0.1, sigmoid loss, dropout disabled); AdamW lr 2e-4. Each step is DPOTrainer.compute_loss (the reference
pass without gradients and the policy's forward on chosen + rejected together), backward and the optimizer's update.
Prints one JSON line like bench_peft.py: tokens/s (2·B·T per step, median over the steps after 2 warm-ups), s/step, peak
RSS MiB, the first loss, versions. --bf16 loads the model in bf16 (LoRA in f32), as bench_peft.py does.
"""
import argparse, json, os, resource, statistics, tempfile, time
import torch
import datasets, peft, transformers, trl
from transformers import AutoModelForCausalLM, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True, help="float32 Hugging Face directory")
p.add_argument("--targets", default="all", choices=["qv", "all"])
p.add_argument("--r", type=int, default=16)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--steps", type=int, default=6)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--bf16", action="store_true", help="model loaded in bf16, LoRA in f32, no autocast")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if a.bf16 else torch.float32)
targets = ["q_proj", "v_proj"] if a.targets == "qv" else "all-linear"
cfg = peft.LoraConfig(r=a.r, lora_alpha=2 * a.r, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM")
args = trl.DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.batch, learning_rate=2e-4, bf16=False, fp16=False,
                     gradient_checkpointing=False, report_to=[], use_cpu=True, save_strategy="no", max_length=None)
placeholder = datasets.Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
trainer = trl.DPOTrainer(model=model, args=args, train_dataset=placeholder, processing_class=tok, peft_config=cfg)
pm = trainer.model
pm.train()
opt = torch.optim.AdamW([q for q in pm.parameters() if q.requires_grad], lr=2e-4)
g = torch.Generator().manual_seed(1)
half = a.seq // 2
def ids(n): return torch.randint(0, pm.config.vocab_size, (n,), generator=g).tolist()
batch = trainer.data_collator([{"prompt_ids": ids(half), "chosen_ids": ids(a.seq - half), "rejected_ids": ids(a.seq - half)}
                               for _ in range(a.batch)])
times, losses = [], []
for step in range(a.steps + 2):
    t = time.perf_counter()
    loss = trainer.compute_loss(pm, batch)
    loss.backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t
    losses.append(loss.item())
    if step >= 2:
        times.append(dt)
med = statistics.median(times)
vers = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__}
lin = str(next(q.dtype for n, q in pm.named_parameters() if "q_proj.base_layer.weight" in n)).replace("torch.", "")
print(json.dumps({"config": vars(a) | {"model": os.path.basename(os.path.normpath(a.model))}, "method": "dpo",
                  "tokens_per_s": round(2 * a.batch * a.seq / med, 1), "s_per_step": round(med, 3), "min_s": round(min(times), 3),
                  "max_s": round(max(times), 3), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "trainable_params": sum(q.numel() for q in pm.parameters() if q.requires_grad), "first_loss": round(losses[0], 4),
                  "torch": torch.__version__, "versions": vers, "dtype": "bf16" if a.bf16 else "f32",
                  "tensor_dtypes": {"linears": lin.replace("float32", "f32").replace("bfloat16", "bf16"), "lora": "f32",
                                    "reference": "the base, adapter disabled"}}))
