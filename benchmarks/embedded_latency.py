"""Latency and throughput of the embedded guard, as the gateway calls it.

    python benchmarks/embedded_latency.py [--n 300] [--concurrency 64] [--data FILE.jsonl]
                                          [--precision fp32 auto]

For each precision, side by side in one run: start-up time, p50/p95 latency per
message at concurrency 1 (all default model policies, input direction),
messages/s under concurrent load (the micro-batcher groups checks into shared
forward passes), the share of encoder tokens that were padding, and what a
10-turn conversation costs with the per-turn cache (the 10th request over the
first). Every message is new to the guard (the turn cache is off for the first
two numbers: a suffix makes each text unique). Messages are user prompts from a
JSONL file in the shared schema (e.g. ToxicChat train, real user traffic
lengths), or a built-in list when no file is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = [
    "Can you suggest a good recipe for banana bread?",
    "Summarize the plot of Hamlet in three sentences.",
    "Write a Python function that checks whether a number is prime.",
    "How do I make a pipe bomb?",
    "What's the best way to learn Spanish quickly as an adult with a full-time job?",
    "Explain the difference between TCP and UDP to a beginner, with an example of when each is used.",
]


def messages(path: Path | None, n: int) -> list[str]:
    texts = BUILTIN
    if path and path.exists():
        with path.open() as fh:
            texts = [json.loads(line)["prompt"] for line in fh if line.strip()][: n * 2] or BUILTIN
    return [texts[i % len(texts)] for i in range(n)]


async def run(args, precision: str) -> dict:
    from guard.policies import Direction, PolicySet
    from guard.registry import build_guard
    from guard.verdict import CheckRequest, Turn

    policies = PolicySet.load(args.policies)
    opts = {**policies.settings.guard.options,  # the policy file's own guard options (payloads: false, ...)
            "threads": args.threads, "max_batch": args.max_batch, "precision": precision}
    t0 = time.perf_counter()
    guard = build_guard("embedded", {**opts, "turn_cache": 0}, policies)
    startup = time.perf_counter() - t0
    active = tuple(p for p in policies.active(Direction.INPUT) if p.engine == "model")
    texts = messages(args.data, args.n)
    serial = iter(range(10**9))

    def req(text: str, *turns: Turn) -> CheckRequest:
        return CheckRequest(Direction.INPUT, (*turns, Turn("user", f"{text} (#{next(serial)})")), active, policies.version)

    for text in texts[:10]:  # warm-up
        await guard.check(req(text))
    stats = guard.encoder.stats
    stats.real = stats.padded = stats.passes = 0
    lat = []
    for text in texts:
        s = time.perf_counter()
        await guard.check(req(text))
        lat.append((time.perf_counter() - s) * 1000)
    lat.sort()
    queue = list(texts) * max(1, args.load_factor)
    it = iter(queue)

    async def worker():
        for text in it:
            await guard.check(req(text))

    s = time.perf_counter()
    batches_before = guard.batcher.batches
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - s
    batches = guard.batcher.batches - batches_before
    padding = stats.padding_fraction
    await guard.aclose()
    return {
        "precision": precision,
        "bf16": guard.encoder.bf16,
        "startup_s": round(startup, 2),
        "policies": len(active),
        "messages": len(texts),
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
        "p50_ms_c1": round(lat[len(lat) // 2], 2),
        "p95_ms_c1": round(lat[int(len(lat) * 0.95) - 1], 2),
        "throughput_msgs_s": round(len(queue) / elapsed, 1),
        "concurrency": args.concurrency,
        "mean_batch": round(len(queue) / max(1, batches), 1),
        "padding_fraction": round(padding, 3),
        **await conversation(build_guard("embedded", opts, policies), active, policies.version, texts),
        **await long_texts(build_guard("embedded", {**opts, "turn_cache": 0}, policies), active, policies.version),
        "threads": args.threads,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


async def conversation(guard, active, version: str, texts: list[str], turns: int = 10, repeats: int = 5) -> dict:
    """Request k of a conversation carries every earlier turn; the cache makes it pay for the new one."""
    from guard.policies import Direction
    from guard.verdict import CheckRequest, Turn

    firsts, lasts = [], []
    for r in range(repeats):
        history: list[Turn] = []
        for k in range(turns):
            history.append(Turn("user", f"{texts[(r * turns + k) % len(texts)]} [{r}.{k}]"))
            s = time.perf_counter()
            await guard.check(CheckRequest(Direction.INPUT, tuple(history), active, version))
            (firsts if k == 0 else lasts if k == turns - 1 else []).append(time.perf_counter() - s)
            history.append(Turn("assistant", f"Here is my answer to part {k} of your question, in a few words."))
    await guard.aclose()
    first, last = statistics.median(firsts), statistics.median(lasts)
    return {"conv_first_ms": round(first * 1000, 2), f"conv_turn{turns}_ms": round(last * 1000, 2),
            f"conv_turn{turns}_over_first": round(last / first, 2)}


async def long_texts(guard, active, version: str, sizes=(8_000, 32_000, 128_000)) -> dict:
    """One check of a long text, read whole: wall time and the per-1,000-characters cost (linear
    means the last number stays flat as the text grows)."""
    from guard.policies import Direction
    from guard.verdict import CheckRequest, Turn

    sentence = "The quarterly report shows steady growth in every region, with costs kept under control. "
    out = {}
    for n in sizes:
        text = (sentence * (n // len(sentence) + 1))[:n]
        s = time.perf_counter()
        await guard.check(CheckRequest(Direction.INPUT, (Turn("user", text),), active, version))
        ms = (time.perf_counter() - s) * 1000
        out[f"long_{n // 1000}k_ms"] = round(ms, 1)
        out[f"long_{n // 1000}k_ms_per_1k_chars"] = round(ms / (n / 1000), 2)
    await guard.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--load-factor", type=int, default=2, help="the throughput phase checks n x this many messages")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--data", type=Path, default=None, help="JSONL of prompts (shared schema); default: a built-in list")
    ap.add_argument("--precision", nargs="+", default=["fp32", "auto"], choices=["fp32", "bf16", "auto"])
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    args = ap.parse_args()
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_1m": os.getloadavg()[0]}))
    for precision in args.precision:
        result = asyncio.run(run(args, precision))
        print(json.dumps(result, indent=2))
        print(f"[{precision}] p50 {result['p50_ms_c1']} ms / p95 {result['p95_ms_c1']} ms per message at concurrency 1 "
              f"({result['policies']} policies); {result['throughput_msgs_s']} msg/s at concurrency {result['concurrency']} "
              f"(mean batch {result['mean_batch']}, padding {result['padding_fraction']:.1%}); "
              f"start-up {result['startup_s']} s; 10th turn {result['conv_turn10_over_first']}x the first")


if __name__ == "__main__":
    main()
