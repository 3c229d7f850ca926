"""Pattern stall: small requests' latency with and without a 4 MiB adversarial body in flight.

Starts the fake upstream and `rsafe serve` (the patterns guard: every detector, a keyword list;
benchmarks/policies_patterns.yaml) as separate processes on loopback. Then, for a fixed time
each, it drives small chat requests at a fixed concurrency

- alone (the baseline),
- while `"a." * 2M` is sent back to back (the body that made the old `email` expression
  backtrack for hours: issue 14),
- while a mixed 4 MiB body is sent back to back (a slice aimed at each detector and a tail of
  ~230,000 addresses to redact: the heaviest scan we know of, seconds of CPU per direction),

and prints the small requests' p50/p99 side by side, counting only those sent while a big
body was in flight, with the big bodies' own latency.

    .venv/bin/python benchmarks/pattern_stall.py [--seconds 10] [--concurrency 8]

On a 2-core machine the load generator, the fake upstream and the gateway share the cores,
so part of the "with" latency is CPU contention, not waiting on the scan.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.gateway_overhead import pct, start_patterns_stack  # noqa: E402

BODY_LIMIT = 4 * 1024 * 1024  # gateway/settings.py max_body_bytes
SMALL = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "mail me at jane@example.com"}]})


def fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def big_body(kind: str) -> bytes:
    budget = BODY_LIMIT - 4096  # the JSON around the content
    if kind == "a.":
        text = fill("a.", budget)
    else:
        eighth = budget // 8
        parts = [fill(u, eighth) for u in ("a.", "4 ", "+1 ", "sk-" + "a" * 19 + " ", "-----BEGIN ", " forbidden-")]
        parts.append(fill(" x@ex.com", budget - sum(map(len, parts))))
        text = "".join(parts)
    body = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": text}]})
    assert len(body) <= BODY_LIMIT
    return body


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
        await r.read()
        assert r.status == 200, r.status
    return t0, time.perf_counter()


async def phase(url: str, seconds: float, concurrency: int, big: bytes | None):
    """(small latencies in ms that overlapped a big body, big latencies in s)."""
    small: list[tuple[float, float]] = []
    bigs: list[tuple[float, float]] = []
    in_flight: list[float] = []  # start time of the big body being sent, if any
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 1),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        for _ in range(20):  # warm-up
            await post(session, url, SMALL)

        async def big_loop() -> None:
            while time.perf_counter() < end:
                in_flight.append(time.perf_counter())
                bigs.append(await post(session, url, big))
                in_flight.pop()

        async def worker() -> None:
            while time.perf_counter() < end or in_flight:
                t0, t1 = await post(session, url, SMALL)
                if big is None or any(b0 <= t0 <= b1 for b0, b1 in bigs) or (in_flight and in_flight[0] <= t0):
                    small.append((t0, t1))

        tasks = [worker() for _ in range(concurrency)]
        if big is not None:
            tasks.append(big_loop())
        await asyncio.gather(*tasks)
    return [(t1 - t0) * 1000 for t0, t1 in small], [t1 - t0 for t0, t1 in bigs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    upstream, gateway, _, gw_port = start_patterns_stack()
    url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    rows = [("none (baseline)", None), ('"a." * 2M', big_body("a.")), ("mixed 4 MiB", big_body("mixed"))]
    print(f"small requests at concurrency {args.concurrency}, {args.seconds:g} s per column, "
          f"big bodies sent back to back, {len(SMALL)} B small body")
    print(f"{'big body in flight':<20}{'small n':>8} {'p50':>9} {'p99':>9} {'max':>9}   {'big n':>5} {'big p50':>8}")
    try:
        for name, body in rows:
            small, bigs = asyncio.run(phase(url, args.seconds, args.concurrency, body))
            big_col = f"{len(bigs):>5} {pct(bigs, 50):>7.2f}s" if bigs else f"{'-':>5} {'-':>8}"
            print(f"{name:<20}{len(small):>8} {pct(small, 50):>7.1f}ms {pct(small, 99):>7.1f}ms "
                  f"{max(small):>7.1f}ms   {big_col}", flush=True)
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(10)
        upstream.wait(10)


if __name__ == "__main__":
    main()
