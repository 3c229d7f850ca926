"""Latency and throughput of the embedded guard, as the gateway calls it.

    python benchmarks/embedded_latency.py [--n 300] [--concurrency 64] [--data FILE.jsonl]

Prints p50/p95 latency per message at concurrency 1 (all default model policies,
input direction) and messages/s under concurrent load, where the micro-batcher
groups checks into shared forward passes. Messages are user prompts from a JSONL
file in the shared schema (default: ToxicChat train, real user traffic lengths),
or a built-in list when that file is absent.
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
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "toxicchat_train.jsonl"
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


async def run(args) -> dict:
    from guard.policies import Direction, PolicySet
    from guard.registry import build_guard
    from guard.verdict import CheckRequest, Turn

    policies = PolicySet.load(args.policies)
    t0 = time.perf_counter()
    guard = build_guard("embedded", {"threads": args.threads, "max_batch": args.max_batch}, policies)
    startup = time.perf_counter() - t0
    active = tuple(p for p in policies.active(Direction.INPUT) if p.engine == "model")
    texts = messages(args.data, args.n)

    def req(text: str) -> CheckRequest:
        return CheckRequest(Direction.INPUT, (Turn("user", text),), active, policies.version)

    for text in texts[:10]:  # warm-up
        await guard.check(req(text))
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
    await guard.aclose()
    return {
        "startup_s": round(startup, 2),
        "policies": len(active),
        "messages": len(texts),
        "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
        "p50_ms_c1": round(lat[len(lat) // 2], 2),
        "p95_ms_c1": round(lat[int(len(lat) * 0.95) - 1], 2),
        "throughput_msgs_s": round(len(queue) / elapsed, 1),
        "concurrency": args.concurrency,
        "mean_batch": round(len(queue) / max(1, batches), 1),
        "threads": args.threads,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--load-factor", type=int, default=2, help="the throughput phase checks n x this many messages")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    print(f"p50 {result['p50_ms_c1']} ms / p95 {result['p95_ms_c1']} ms per message at concurrency 1 "
          f"({result['policies']} policies); {result['throughput_msgs_s']} msg/s at concurrency {result['concurrency']} "
          f"(mean batch {result['mean_batch']}); start-up {result['startup_s']} s")


if __name__ == "__main__":
    main()
