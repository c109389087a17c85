"""Expected chat-template renderings for FinchTokenizer's Jinja interpreter.

Renders every template in Tests/Fixtures/tokenizer/templates/*.jinja on a set of conversations
with transformers' own renderer (`render_jinja_template`: an ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now, namespace, dict and
HF's tojson), and writes Tests/Fixtures/tokenizer/template_cases.json and, next to it,
template_cases.metadata.json (fixture_io.write_metadata: the script, pip freeze of the venv, the files).

Run from the repository root with a venv that has transformers and jinja2 (no torch needed):
    "$(Scripts/reference-venv.sh)"/bin/python Scripts/tokenizer/make_template_fixtures.py
"""
import glob
import json
import os
import sys

import jinja2
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")
sys.path.insert(0, os.path.join(ROOT, "Scripts", "fixtures"))
from fixture_io import write_metadata  # noqa: E402

SPECIAL = {
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "02 Mar 2025"},
    "gemma2": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "mistral-v0.1": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mixtral-v0.1": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral-v0.2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral-v0.3": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral-nemo": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen1.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen2.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "hermes2pro": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"},
    "deepseek-r1": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_temperature",
            "description": "Get the current temperature at a location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The location, as \"City, Country\"."},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit."},
                    "days": {"type": "integer", "description": "Forecast days."},
                },
                "required": ["location", "unit"],
            },
            "return": {"type": "number", "description": "The temperature, as a float."},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web — returns snippets.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "Query text"},
                                                            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"}}},
        },
    },
]

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello! What's 2+2?"}],
    "system_user": [{"role": "system", "content": "You are a pirate. Answer briefly."},
                    {"role": "user", "content": "Hi there"}],
    "multi": [{"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Tell me a joke."}],
    "system_multi": [{"role": "system", "content": "Be concise."},
                     {"role": "user", "content": "What is LoRA?"},
                     {"role": "assistant", "content": "<think>short</think>Low-rank adaptation."},
                     {"role": "user", "content": "And QLoRA?"}],
    "unicode": [{"role": "user", "content": "  naïve café — 日本語 🤖 \"double\" and 'single' quotes \\ backslash\n\tnext line  "},
                {"role": "assistant", "content": "Ünïcödé answer\u200bwith zero width\n"},
                {"role": "user", "content": "{{ not a template }} {% raw %}"}],
    "assistant_last": [{"role": "user", "content": "Write a haiku."},
                       {"role": "assistant", "content": "Autumn moonlight—"}],
    "tools": [{"role": "system", "content": "You answer weather questions."},
              {"role": "user", "content": "What's the temperature in Paris right now?"},
              {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function", "function": {
                  "name": "get_current_temperature",
                  "arguments": {"location": "Paris, France", "unit": "celsius", "days": 1, "ratio": 0.5, "flag": True, "none": None}}}]},
              {"role": "tool", "tool_call_id": "call12345", "name": "get_current_temperature", "content": "22.5"},
              {"role": "assistant", "content": "It is 22.5 °C in Paris."},
              {"role": "user", "content": "Thanks!"}],
    "multimodal": [{"role": "system", "content": [{"type": "text", "text": "Describe images."}]},
                   {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is in this image?  "}]}],
    "empty": [],
}

# Conversations rendered with the tool list as well.
WITH_TOOLS = {"tools", "user", "system_user"}


def render(template, messages, agp, tools, variables):
    try:
        out, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                       add_generation_prompt=agp, **variables)
        return {"expected": out[0]}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception() and undefined/type errors inside the template.
        return {"error": str(e), "error_type": type(e).__name__}
    except Exception as e:  # noqa: BLE001 - any failure is an expected failure case
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    cases = []
    for path in sorted(glob.glob(os.path.join(FIX, "templates", "*.jinja"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            template = f.read()
        variables = SPECIAL[name]
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                tool_options = [None, TOOLS] if conv_name in WITH_TOOLS else [None]
                for tools in tool_options:
                    case = {"template": name, "conversation": conv_name, "messages": messages,
                            "add_generation_prompt": agp, "tools": tools, "variables": variables}
                    case.update(render(template, json.loads(json.dumps(messages)), agp, tools, variables))
                    cases.append(case)
    out = os.path.join(FIX, "template_cases.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_metadata(FIX, __file__, ["template_cases.json"], file_name="template_cases.metadata.json")
    ok = sum(1 for c in cases if "expected" in c)
    print(f"wrote {len(cases)} cases ({ok} rendered, {len(cases) - ok} errors) to {out}")


if __name__ == "__main__":
    main()
