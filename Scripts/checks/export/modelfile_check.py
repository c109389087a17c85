"""Writes template.txt (the Modelfile's TEMPLATE) and cases.json (conversations with the text the
GGUF's Jinja chat template gives for them, rendered by jinja2 as transformers renders chat templates,
with add_generation_prompt; a leading BOS text is dropped when the GGUF adds BOS) for
modelfile_render.go. Usage: modelfile_check.py MODEL.gguf MODEL.Modelfile OUTDIR"""
import json, os, re, sys
from datetime import datetime
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from gguf import GGUFReader

gguf_path, modelfile, out = sys.argv[1:4]
r = GGUFReader(gguf_path)
f = lambda k: r.fields[k].contents() if k in r.fields else None
tokens = f("tokenizer.ggml.tokens")
bos = tokens[f("tokenizer.ggml.bos_token_id")] if f("tokenizer.ggml.bos_token_id") is not None else ""
eos = tokens[f("tokenizer.ggml.eos_token_id")] if f("tokenizer.ggml.eos_token_id") is not None else ""
add_bos = bool(f("tokenizer.ggml.add_bos_token"))

def raise_exception(m):
    raise jinja2.exceptions.TemplateError(m)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
jinja = env.from_string(f("tokenizer.chat_template"))

text = open(modelfile).read()
m = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
if not m:
    sys.exit(f"{modelfile}: no TEMPLATE")
open(os.path.join(out, "template.txt"), "w").write(m.group(1))

U, A, S = "user", "assistant", "system"
conversations = [
    [(U, "Hello there!")],
    [(S, "Be brief."), (U, "Hi")],
    [(U, "What is 2+2?"), (A, "4."), (U, "And 3+3?")],
    [(S, "You are a pirate."), (U, "Hi"), (A, "Arr, matey."), (U, "Where is the ship?\nTell me.")],
    [(U, "  spaces around  "), (A, "ok"), (U, "unicode: é ü 日本 🐦"), (A, "fine"), (U, "quotes \" ' and {{ braces }}")],
    [(S, ""), (U, "empty system")],
]
cases = []
for c in conversations:
    msgs = [{"role": r_, "content": t} for r_, t in c]
    expected = jinja.render(messages=msgs, add_generation_prompt=True, bos_token=bos, eos_token=eos)
    if add_bos and bos and expected.startswith(bos):
        expected = expected[len(bos):]
    cases.append({"messages": msgs, "expected": expected})
json.dump(cases, open(os.path.join(out, "cases.json"), "w"))
print(json.dumps({"modelfile": modelfile, "template_chars": len(m.group(1)), "conversations": len(cases),
                  "stops": re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)}))
