"""Streaming costs: time to first token, delivered token rate, and hold-back delay.

Against the fake upstream's `paced` model (a fixed time to first token and a fixed token
rate), with the gateway's configured guard (the embedded guard with policies.yaml by default):

- TTFT: time from sending the request to the first content byte, calling the upstream
  directly, through the gateway with `input_mode: concurrent`, and with `input_mode: before`.
- Throughput: characters/s delivered end to end (all characters / time of the last one),
  direct vs the gateway in `window` mode.
- Hold-back: for each character, its arrival time through the gateway minus its arrival time
  direct (same position in the same paced stream), p50 and p99.

    .venv/bin/python benchmarks/streaming.py [--policies policies.yaml] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.gateway_overhead import start  # noqa: E402
from tests.servers import free_port  # noqa: E402


async def timed_stream(url: str, model: str, prompt: str) -> list[tuple[float, int]]:
    """(seconds since send, cumulative characters): first the first event of any kind
    (the role chunk: what the input check delays), then each content chunk."""
    body = orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]})
    marks: list[tuple[float, int]] = []
    total = 0
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            assert r.status == 200, await r.text()
            async for line in r.content:
                if not line.startswith(b"data: {"):
                    continue
                if not marks:
                    marks.append((time.perf_counter() - t0, 0))
                event = orjson.loads(line[6:])
                for c in event.get("choices") or []:
                    text = (c.get("delta") or {}).get("content") or ""
                    if text:
                        total += len(text)
                        marks.append((time.perf_counter() - t0, total))
    return marks


def arrival(marks: list[tuple[float, int]], n: int) -> list[float]:
    """Arrival time of each character index 0..n-1."""
    out, j = [], 0
    for i in range(n):
        while marks[j][1] <= i:
            j += 1
        out.append(marks[j][0])
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="policies.yaml")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--ttft-ms", type=int, default=300)
    ap.add_argument("--rate", type=int, default=60, help="upstream tokens/s (4 characters each)")
    ap.add_argument("--tokens", type=int, default=200)
    args = ap.parse_args()

    model = f"paced:{args.ttft_ms}:{args.rate}:{args.tokens}"
    prompt = "Tell me a long story about a lighthouse keeper and the sea."
    tmp = Path(tempfile.mkdtemp())
    text = Path(args.policies).read_text()
    procs = []
    up_port = free_port()
    procs.append(start([sys.executable, "-m", "tests.fakes.upstream", "--port", str(up_port)],
                       f"http://127.0.0.1:{up_port}/v1/models"))
    urls = {"direct": f"http://127.0.0.1:{up_port}/v1/chat/completions"}
    try:
        for mode in ("concurrent", "before"):
            path = tmp / f"{mode}.yaml"
            path.write_text(text.replace("input_mode: concurrent", f"input_mode: {mode}").replace("input_mode: before", f"input_mode: {mode}"))
            port = free_port()
            procs.append(start([str(Path(sys.executable).parent / "rsafe"), "serve", "--port", str(port), "--policies", str(path),
                                "--upstream", f"http://127.0.0.1:{up_port}/v1", "--block-log", str(tmp / "b.jsonl"),
                                "--log-level", "warning"], f"http://127.0.0.1:{port}/healthz"))
            urls[mode] = f"http://127.0.0.1:{port}/v1/chat/completions"
        results: dict[str, list[list[tuple[float, int]]]] = {k: [] for k in urls}
        for name, url in urls.items():
            asyncio.run(timed_stream(url, model, prompt + " (warm-up)"))  # model load, connection
            for i in range(args.runs):  # a new prompt each run: no verdict-cache hits
                results[name].append(asyncio.run(timed_stream(url, model, f"{prompt} Variation {i} for {name}.")))
        n = args.tokens * 4
        ttfb = {k: [runs[0][0] * 1000 for runs in v] for k, v in results.items()}
        ttft = {k: [runs[1][0] * 1000 for runs in v] for k, v in results.items()}
        print(f"upstream: TTFT {args.ttft_ms} ms, {args.rate} tokens/s, {args.tokens} tokens; policies {args.policies}; {args.runs} runs")
        print(f"{'path':<12}{'first event':>12}{'added':>9}{'first text':>12}{'added':>9}{'chars/s':>9}")
        d_fb, d_ft = statistics.median(ttfb["direct"]), statistics.median(ttft["direct"])
        for name, runs in results.items():
            rate = statistics.median([m[-1][1] / m[-1][0] for m in runs])
            fb, ft = statistics.median(ttfb[name]), statistics.median(ttft[name])
            print(f"{name:<12}{fb:>10.1f}ms{fb - d_fb:>7.1f}ms{ft:>10.1f}ms{ft - d_ft:>7.1f}ms{rate:>9.0f}")
        delays = []
        for d, g in zip(results["direct"], results["concurrent"]):
            delays += [(tg - td) * 1000 for td, tg in zip(arrival(d[1:], n), arrival(g[1:], n))]
        print(f"hold-back per character (window mode, concurrent): p50 {pct(delays, 50):.1f} ms, p99 {pct(delays, 99):.1f} ms")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
