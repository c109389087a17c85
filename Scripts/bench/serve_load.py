"""Load test of an OpenAI-compatible server: N concurrent streaming chat clients for D seconds.

Each client sends chat completions one after another (questions from Tests/Fixtures/datasets,
greedy, max_tokens M) and reads the server-sent events. Prints one JSON line: completed
requests, errors, aggregate generated tokens/s, p50/p95 time to first token and time per output
token, and the server's peak RSS (VmHWM of --pid). Tokens are the content chunks that arrived
inside the window (one token each on both servers; also those of answers still running at the
end), so long answers cut off at the end still count for what they streamed.
"""
import argparse
import asyncio
import json
import random
import statistics
import time

import aiohttp

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True, help="…/v1/chat/completions")
parser.add_argument("--model", default="default")
parser.add_argument("--clients", type=int, default=64)
parser.add_argument("--duration", type=float, default=60)
parser.add_argument("--max-tokens", type=int, default=128)
parser.add_argument("--questions", default="Tests/Fixtures/datasets/vicuna_questions.jsonl")
parser.add_argument("--pid", type=int, help="server process, for its peak RSS")
parser.add_argument("--label", default="")
args = parser.parse_args()

questions = [json.loads(line)["text"] for line in open(args.questions) if line.strip()]
stats = {"done": 0, "errors": 0, "tokens": 0, "ttft": [], "tpot": [], "error_samples": []}


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def client(i, session, deadline):
    rng = random.Random(i)
    while time.monotonic() < deadline:
        body = {"model": args.model, "messages": [{"role": "user", "content": rng.choice(questions)}],
                "temperature": 0, "max_tokens": args.max_tokens, "stream": True,
                "stream_options": {"include_usage": True}}
        start = time.monotonic()
        first, last, chunks = None, None, 0
        try:
            async with session.post(args.url, json=body) as r:
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
                buffer = b""
                async for data in r.content.iter_any():
                    buffer += data
                    while b"\n\n" in buffer:
                        block, buffer = buffer.split(b"\n\n", 1)
                        line = block.decode().strip()
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        for c in chunk.get("choices") or []:
                            if (c.get("delta") or {}).get("content"):
                                now = time.monotonic()
                                if first is None:
                                    first = now
                                last = now
                                chunks += 1
                                if now <= deadline:
                                    stats["tokens"] += 1
                    if time.monotonic() > deadline + 30:
                        raise RuntimeError("request ran 30 s past the end")
        except asyncio.CancelledError:
            return
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            stats["errors"] += 1
            if len(stats["error_samples"]) < 3:
                stats["error_samples"].append(str(e)[:200])
            continue
        if time.monotonic() > deadline:   # finished after the window: only its streamed tokens count
            return
        stats["done"] += 1
        if first is not None:
            stats["ttft"].append(first - start)
            if chunks > 1:
                stats["tpot"].append((last - first) / (chunks - 1))


async def main():
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        deadline = time.monotonic() + args.duration
        tasks = [asyncio.create_task(client(i, session, deadline)) for i in range(args.clients)]
        await asyncio.sleep(args.duration)
        for t in tasks:
            t.cancel()   # requests still running at the end are dropped, not errors
        await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
rss = None
if args.pid:
    for line in open(f"/proc/{args.pid}/status"):
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
print(json.dumps({
    "server": args.label, "clients": args.clients, "duration_s": args.duration, "max_tokens": args.max_tokens,
    "requests_completed": stats["done"], "errors": stats["errors"],
    "tokens_per_s": round(stats["tokens"] / args.duration, 1),
    "ttft_p50_ms": ms(percentile(stats["ttft"], 50)), "ttft_p95_ms": ms(percentile(stats["ttft"], 95)),
    "tpot_p50_ms": ms(percentile(stats["tpot"], 50)), "tpot_p95_ms": ms(percentile(stats["tpot"], 95)),
    "peak_rss_mib": None if rss is None else round(rss), "error_samples": stats["error_samples"],
}))
