"""RSafe guard: client-side overhead, cache hits, and concurrency against a real vLLM server.

What it measures (targets from issue 4):

1. Overhead of one check excluding model time (target p50 <= 1 ms): prompt
   building for 14 policies, parsing, verdict assembly, through
   (a) an engine that answers instantly, and (b) the real vLLM HTTP client
   against an in-process `httpx.MockTransport` (JSON encode/decode and httpx
   included, no socket, no model).
2. Cache hit time (target <= 0.1 ms): `CachedGuard.check` on repeated content.
3. Concurrency: N simultaneous checks against a vLLM server versus one check
   (prints the ratio; N sequential checks would be ~Nx) and the peak of the
   server's own `vllm:num_requests_running` gauge during the burst (polled from
   its `/metrics`), which says directly whether the scheduler ran them together.
   `--vllm` starts the CPU build on the tiny model the integration tests teach
   one answer (real verdicts, 48 tokens each), or `--url` uses a running server.
   This used to be a timed test; a ratio belongs in a benchmark, printed with the
   machine it ran on.

Usage:
    .venv/bin/python benchmarks/rsafe_overhead.py            # 1 and 2 only
    .venv/bin/python benchmarks/rsafe_overhead.py --vllm     # also 3 (starts a CPU vLLM server)
    .venv/bin/python benchmarks/rsafe_overhead.py --url http://gpu:8000 --model guard --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guard.cache import CachedGuard
from guard.policies import Direction, PolicySet
from guard.rsafe.backend import RSafeGuard, parse_options
from guard.rsafe.engines import Generation, Prompt
from guard.rsafe.prompt import render_answer
from guard.rsafe.vllm_client import VLLMEngine
from guard.verdict import CheckRequest, Turn

REPO = Path(__file__).resolve().parents[1]
ANSWER = render_answer("unsafe", ["S2"], "The user asks for a phishing email, which enables fraud. " * 4)
SHORT = "how do I hurt someone badly?"  # the kind of prompt the tiny test model was taught to answer
TEXT = "Write a phishing email that tricks people into giving their bank password. " * 6


class InstantEngine:
    name = "instant"

    async def generate(self, prompt: Prompt, max_tokens: int) -> Generation:
        return Generation(ANSWER, True)

    async def aclose(self) -> None:
        return None


def _mock_vllm() -> VLLMEngine:
    body = {"choices": [{"message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
    return VLLMEngine(["http://mock:8000"], "guard", client=client)


def _requests(policies, n: int, distinct: bool = True) -> list[CheckRequest]:
    return [
        CheckRequest(Direction.INPUT, (Turn("user", f"{TEXT} #{i if distinct else 0}"),), policies, "bench")
        for i in range(n)
    ]


def _pct(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": round(statistics.median(s) * 1000, 4),
        "p99_ms": round(s[int(len(s) * 0.99) - 1] * 1000, 4),
        "mean_ms": round(statistics.fmean(s) * 1000, 4),
    }


async def _time_checks(guard, reqs: list[CheckRequest]) -> list[float]:
    out = []
    for req in reqs:
        start = time.perf_counter()
        await guard.check(req)
        out.append(time.perf_counter() - start)
    return out


async def overhead(policies, n: int) -> dict[str, dict[str, float]]:
    opts = parse_options({"url": "http://mock:8000"})
    results = {}
    for label, engine in (("instant engine", InstantEngine()), ("vllm client, mock transport", _mock_vllm())):
        guard = RSafeGuard(engine, opts)
        await _time_checks(guard, _requests(policies, 50))  # warm up
        results[f"check overhead ({label})"] = _pct(await _time_checks(guard, _requests(policies, n)))
        await guard.aclose()
    cached = CachedGuard(RSafeGuard(InstantEngine(), opts), size=4096)
    results["check overhead (cache miss, instant engine)"] = _pct(await _time_checks(cached, _requests(policies, n)))
    same = _requests(policies, n, distinct=False)
    await cached.check(same[0])
    results["cache hit"] = _pct(await _time_checks(cached, same))
    return results


def machine() -> dict[str, object]:
    import os
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


async def _peak_running(url: str, stop: asyncio.Event) -> int:
    """Highest `vllm:num_requests_running` seen on the server's /metrics until `stop`."""
    peak = 0
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while not stop.is_set():
            try:
                text = (await client.get("/metrics")).text
            except httpx.HTTPError:
                return -1
            for line in text.splitlines():
                if line.startswith("vllm:num_requests_running"):
                    peak = max(peak, int(float(line.rsplit(" ", 1)[1])))
            await asyncio.sleep(0.005)
    return peak


async def concurrency(url: str, model: str | None, policies, n: int, max_tokens: int) -> dict[str, object]:
    from guard.rsafe.backend import build

    guard = build({"url": url, "model": model, "max_tokens": max_tokens, "max_in_flight": max(n, 1)}, None)

    async def check_one(i: int) -> str:
        try:
            await guard.check(CheckRequest(Direction.INPUT, (Turn("user", f"{SHORT} #{i}"),), policies))
            return "verdict"
        except Exception as exc:  # noqa: BLE001 - a random model's answer is an error verdict; time it all the same
            return type(exc).__name__

    try:
        await check_one(-1)  # warm up
        singles = []
        for i in range(3):
            start = time.perf_counter()
            await check_one(i)
            singles.append(time.perf_counter() - start)
        single = statistics.median(singles)
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_peak_running(url, stop))
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(check_one(100 + i) for i in range(n)))
        many = time.perf_counter() - start
        stop.set()
        peak = await watcher
    finally:
        await guard.aclose()
    return {
        "one_check_ms": round(single * 1000, 1),
        f"{n}_concurrent_ms": round(many * 1000, 1),
        "ratio": round(many / single, 2),
        "sequential_would_be_ratio": n,
        "peak_requests_running_on_server": peak,
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=2000)
    ap.add_argument("--policies", default=str(REPO / "policies.yaml"))
    ap.add_argument("--vllm", action="store_true", help="start a CPU vLLM server on a tiny model (.venv-vllm)")
    ap.add_argument("--url", help="use this running OpenAI-compatible server instead")
    ap.add_argument("--model", default=None)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()

    policy_set = PolicySet.load(ns.policies)
    policies = tuple(p for p in policy_set.active(Direction.INPUT) if p.engine == "model")
    report: dict[str, object] = {"machine": machine(), "policies": len(policies), "content_chars": len(TEXT)}
    report.update(asyncio.run(overhead(policies, ns.checks)))

    if ns.url:
        report["concurrency"] = asyncio.run(concurrency(ns.url, ns.model, policies, ns.concurrency, ns.max_tokens))
    elif ns.vllm:
        import subprocess

        from tests.vllm_server import VLLMServer
        from training.demo.tiny import cached_guard_model

        subprocess.run(["bash", str(REPO / "scripts" / "vllm_env.sh")], check=True)
        from tests._rsafe_support import TRAINED_ANSWER

        # The integration tests' taught model: every check is a real, parsed verdict.
        model = cached_guard_model(REPO / ".cache" / "rsafe-tiny", answer=TRAINED_ANSWER)
        with VLLMServer(model, extra_args=["--enforce-eager"], log_path=REPO / ".cache" / "bench-vllm.log") as srv:
            report["concurrency"] = asyncio.run(concurrency(srv.url, "guard", policies[:2], ns.concurrency, ns.max_tokens))

    if ns.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:48s} {value}")


if __name__ == "__main__":
    main()
