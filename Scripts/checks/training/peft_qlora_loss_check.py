"""The reference side of Scripts/checks/training/qlora_loss_check.sh: PyTorch + PEFT (+ bitsandbytes) train
SmolLM2 (f32 safetensors) on oa_questions.jsonl with the same settings as Finch's check — r=16
all-linear, alpha 32, dropout 0.05, AdamW lr 2e-4, 10 warmup steps then linear decay, B=4,
T≤256, loss on the output only, 5% held out, seed 42 — once with f32 LoRA and once with QLoRA
(NF4 + double quantization, f32 compute), and print the held-out loss before training and at
STEPS/2 and STEPS. Its split and batch order are its own (not Finch's), so compare gaps, not losses.
  VENV/bin/python Scripts/checks/training/peft_qlora_loss_check.py MODEL_DIR DATA [STEPS] [lora|qlora]
"""
import json, math, random, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model

model_dir, data = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 200
kinds = sys.argv[4:] or ["lora", "qlora"]
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(model_dir)
rows = [json.loads(l) for l in open(data)]
examples = []
for r in rows:
    src = tok(r["input"], add_special_tokens=False).input_ids
    tgt = tok(r["output"], add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = (src + tgt)[:256]
    labels = ([-100] * len(src) + tgt)[:256]
    if any(l != -100 for l in labels[1:]):
        examples.append((ids, labels))
rng = random.Random(42)
rng.shuffle(examples)
n_eval = max(1, int(len(examples) * 0.05))
eval_set, train_set = examples[:n_eval], examples[n_eval:]

def batch(items):
    n = max(len(i) for i, _ in items)
    ids = torch.tensor([i + [tok.eos_token_id] * (n - len(i)) for i, _ in items])
    lab = torch.tensor([l + [-100] * (n - len(l)) for _, l in items])
    att = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i, _ in items])
    return ids, lab, att

def eval_loss(m):
    m.eval(); tot = cnt = 0.0
    with torch.no_grad():
        for i in range(0, len(eval_set), 4):
            ids, lab, att = batch(eval_set[i:i + 4])
            logits = m(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            t = lab[:, 1:]
            l = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=-100, reduction="sum")
            tot += l.item(); cnt += (t != -100).sum().item()
    m.train(); return tot / cnt

for kind in kinds:
    torch.manual_seed(42)
    kw = {}
    if kind == "qlora":
        kw = dict(quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32), device_map="cpu")
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw)
    m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / 10 if s < 10 else max(0.0, (steps - s) / (steps - 10)))
    order = list(range(len(train_set))); random.Random(42).shuffle(order)
    losses = {0: eval_loss(m)}
    m.train()
    for s in range(steps):
        idx = [order[(s * 4 + j) % len(order)] for j in range(4)]
        ids, lab, att = batch([train_set[i] for i in idx])
        loss = m(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        if s + 1 in (steps // 2, steps):
            losses[s + 1] = eval_loss(m)
    print(json.dumps({"engine": "peft" + (" + bitsandbytes" if kind == "qlora" else ""), "run": kind, "steps": steps,
                      "eval_loss": losses}), flush=True)
