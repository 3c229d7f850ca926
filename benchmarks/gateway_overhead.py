"""Gateway overhead: the same load against the fake upstream directly and through the gateway.

Starts the fake upstream (tests/fakes/upstream.py) and `rsafe serve` (patterns guard on)
as separate processes on loopback, then drives both with an aiohttp client at
concurrency 1 and 64, non-streaming and streaming. Prints p50/p99 latency of each and
the added latency (gateway minus direct), and requests/s.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 2000] [--concurrency 1 64]

Note: on a 2-core machine the load generator, the fake upstream and the gateway share
the cores, so at concurrency 64 part of the "added" latency is CPU contention.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.servers import free_port  # noqa: E402

BODY = {"model": "echo", "messages": [{"role": "user", "content": "Summarize the plot of Hamlet in two sentences, please."}]}


def start(cmd: list[str], url: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not start")


async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
        await r.read()  # a stream is read to its end
        assert r.status == 200, r.status
    return (time.perf_counter() - t0) * 1000


async def load(url: str, n: int, concurrency: int, stream: bool) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = iter(range(n))
    body = orjson.dumps({**BODY, "stream": stream})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for _ in range(min(50, n)):  # warm-up
            await one(session, url, body)

        async def worker() -> None:
            for _ in queue:
                latencies.append(await one(session, url, body))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return latencies, n / elapsed


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def start_patterns_stack() -> tuple[subprocess.Popen, subprocess.Popen, int, int]:
    """The fake upstream and `rsafe serve` with the patterns policies, as separate processes."""
    up_port, gw_port = free_port(), free_port()
    upstream = start([sys.executable, "-m", "tests.fakes.upstream", "--port", str(up_port)],
                     f"http://127.0.0.1:{up_port}/v1/models")
    gateway = start(
        [str(Path(sys.executable).parent / "rsafe"), "serve", "--port", str(gw_port),
         "--policies", "benchmarks/policies_patterns.yaml", "--upstream", f"http://127.0.0.1:{up_port}/v1",
         "--block-log", "/tmp/rsafe-bench-blocks.jsonl", "--log-level", "warning"],
        f"http://127.0.0.1:{gw_port}/healthz",
    )
    return upstream, gateway, up_port, gw_port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    args = ap.parse_args()

    upstream, gateway, up_port, gw_port = start_patterns_stack()
    direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    via = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    print(f"{'mode':<10}{'conc':>5} {'direct p50':>11} {'gw p50':>8} {'added p50':>10} "
          f"{'direct p99':>11} {'gw p99':>8} {'added p99':>10} {'direct rps':>11} {'gw rps':>8}")
    try:
        for stream in (False, True):
            for c in args.concurrency:
                d, d_rps = asyncio.run(load(direct, args.requests, c, stream))
                g, g_rps = asyncio.run(load(via, args.requests, c, stream))
                d50, g50, d99, g99 = pct(d, 50), pct(g, 50), pct(d, 99), pct(g, 99)
                print(f"{'stream' if stream else 'json':<10}{c:>5} {d50:>9.2f}ms {g50:>6.2f}ms {g50 - d50:>8.2f}ms "
                      f"{d99:>9.2f}ms {g99:>6.2f}ms {g99 - d99:>8.2f}ms {d_rps:>11.0f} {g_rps:>8.0f}", flush=True)
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(10)
        upstream.wait(10)


if __name__ == "__main__":
    main()
