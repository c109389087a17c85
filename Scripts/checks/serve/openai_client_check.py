"""Checks `finch serve` with the official `openai` Python client (run by Scripts/checks/serve/e2e.sh).

Streams a chat and a completion, compares them with the non-streamed answers, scores a prompt
with echo + logprobs (what lm-evaluation-harness' local-completions asks), picks adapters by
model name, and checks that errors arrive as the client's typed exceptions.
"""
import argparse
import sys

import openai

parser = argparse.ArgumentParser()
parser.add_argument("--base-url", required=True)
args = parser.parse_args()
client = openai.OpenAI(base_url=args.base_url, api_key="unused")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


models = [m.id for m in client.models.list().data]
check(models[:1] == ["smollm2-135m"] and {"lora", "dora"} <= set(models), f"models: {models}")

messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
whole = client.chat.completions.create(model="smollm2-135m", messages=messages, temperature=0, max_tokens=40)
text = whole.choices[0].message.content
check(bool(text) and whole.usage.completion_tokens > 0, f"chat: {text!r}")

stream = client.chat.completions.create(model="smollm2-135m", messages=messages, temperature=0, max_tokens=40,
                                        stream=True, stream_options={"include_usage": True})
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("".join(pieces) == text, f"streamed chat equals the whole answer ({len(pieces)} chunks)")
check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens, f"stream usage: {usage}")
check(finish == whole.choices[0].finish_reason, f"finish reason {finish}")

lp = client.chat.completions.create(model="lora", messages=messages, temperature=0, max_tokens=8, logprobs=True,
                                    top_logprobs=3)
content = lp.choices[0].logprobs.content
check(len(content) > 0 and all(len(t.top_logprobs) == 3 for t in content) and lp.model == "lora",
      f"adapter 'lora' with logprobs: {lp.choices[0].message.content!r}")
base_lp = client.chat.completions.create(model="base", messages=messages, temperature=0, max_tokens=1, logprobs=True)
check(base_lp.choices[0].logprobs.content[0].logprob != content[0].logprob, "the adapter changes the scores")

completion = client.completions.create(model="smollm2-135m", prompt="Once upon a time", max_tokens=12, temperature=0)
streamed = "".join(c.choices[0].text for c in client.completions.create(
    model="smollm2-135m", prompt="Once upon a time", max_tokens=12, temperature=0, stream=True) if c.choices)
check(streamed == completion.choices[0].text, f"completion stream equals the whole: {streamed!r}")

scored = client.completions.create(model="dora", prompt="The capital of France is Paris", max_tokens=0, echo=True,
                                   logprobs=1, temperature=0)
lps = scored.choices[0].logprobs
check(lps.token_logprobs[0] is None and all(v <= 0 for v in lps.token_logprobs[1:]) and
      "".join(lps.tokens) == "The capital of France is Paris" and scored.choices[0].text == "The capital of France is Paris",
      f"echo scoring: {sum(lps.token_logprobs[1:]):.4f} over {len(lps.tokens)} tokens")

try:
    client.chat.completions.create(model="nope", messages=messages)
    check(False, "unknown model is refused")
except openai.NotFoundError as e:
    check(e.body.get("code") == "model_not_found", f"unknown model: NotFoundError ({e.body.get('message')[:60]}...)")
try:
    client.chat.completions.create(model="base", messages=messages, temperature=9)
    check(False, "temperature 9 is refused")
except openai.BadRequestError as e:
    check(e.body.get("param") == "temperature", "temperature 9: BadRequestError naming the param")

if failures:
    print(f"{len(failures)} openai-client check(s) failed", file=sys.stderr)
    sys.exit(1)
print("openai client: all checks passed")
