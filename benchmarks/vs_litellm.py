"""The gateway beside LiteLLM's proxy: one run, one fake upstream, interleaved rounds.

Four targets behind the same loopback fake upstream (an OpenAI-wire HTTP server started
by this script, JSON and SSE: benchmarks/vs_litellm_upstream.py):

- `direct`: the fake upstream itself (the baseline the others add to);
- `litellm`: LiteLLM's proxy (`litellm --config`, 1 worker, a master key, no guard), from a
  scratch virtual environment outside the repository (`--litellm-venv`, default
  /tmp/rsafe-bench-litellm; `litellm[proxy]` is installed there if it is missing);
- `rsafe-patterns`: `rsafe serve` (1 worker, a gateway key) with the patterns guard only
  (benchmarks/policies_patterns.yaml);
- `rsafe-embedded`: `rsafe serve` with the default policies.yaml (the embedded guard; input
  and output checked).

Every request carries a prompt never sent before (a serial number and ~300 characters of
everyday requests from benchmarks/data/everyday_benign.jsonl, those the embedded guard
flags on their own left out, so that the path measured is the allowed one), and the fake's
reply is that prompt's words reversed, so no verdict, turn or feature cache can answer
from an earlier request. An input block (HTTP 400 `content_filter`) is still timed as an
answer and counted in the `blocked` column. Rounds are interleaved: each
round runs every (mode, concurrency) cell against every target, in a rotating target order,
so a slow patch of the machine is spread over all of them. Printed per cell: p50/p99
latency, added p50/p99 over `direct`, requests/s, errors; plus date, machine (CPU model,
cores), the load average before and after, and the versions. `--out` also writes JSON.

    .venv/bin/python benchmarks/vs_litellm.py                         # defaults: 3 rounds x 200 requests
    .venv/bin/python benchmarks/vs_litellm.py --rounds 1 --requests 40  # a quick look

On a 2-core machine the load generator, the fake upstream and the target share the cores:
look at the load average printed before trusting a number.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("direct", "litellm", "rsafe-patterns", "rsafe-embedded")
LITELLM_SPEC = "litellm[proxy]"
# Both proxies authenticate the client, as deployed: LiteLLM's master key (it refuses to start
# without one), the gateway's gateway key; the fake upstream ignores it.
KEY = "sk-" + secrets.token_hex(32)


# ---- prompts: a new one on every request ---------------------------------------------------
def everyday_requests() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "benchmarks/data/everyday_benign.jsonl").read_text().splitlines()
            if line.strip()]
    return [r["text"] for r in rows if r.get("kind") == "request"]


def screened(pool: list[str], gateway: str) -> list[str]:
    """The pool texts the embedded guard lets through (its /v1/moderations): a benchmark of the
    path a request takes when it is allowed, not of how fast a false positive is refused."""
    import httpx

    r = httpx.post(gateway + "/v1/moderations", json={"input": pool}, headers={"authorization": f"Bearer {KEY}"},
                   timeout=300)
    r.raise_for_status()
    return [t for t, res in zip(pool, r.json()["results"]) if not res["flagged"]]


class Prompts:
    def __init__(self, pool: list[str], seed: int = 0) -> None:
        self.pool = pool
        self.rng = random.Random(seed)
        self.serial = 0

    def next(self) -> str:
        self.serial += 1
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < 280:
            parts.append(self.rng.choice(self.pool))
        return f"Request {self.serial}: " + " ".join(parts)


# ---- processes -----------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, name: str, timeout_s: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}; its log: {log}\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{name} did not answer {url} within {timeout_s:.0f} s; its log: {log}")


def start(name: str, cmd: list[str], ready_url: str, work: Path, env: dict[str, str] | None = None,
          timeout_s: float = 180) -> subprocess.Popen:
    log = work / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    t0 = time.monotonic()
    wait_ready(proc, ready_url, name, timeout_s, log)
    print(f"  {name} ready in {time.monotonic() - t0:.1f} s", flush=True)
    return proc


def ensure_litellm(venv: Path, install: bool) -> Path | None:
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    if not install:
        return None
    print(f"installing {LITELLM_SPEC} into {venv} (once; a few minutes)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC], check=True)
    return exe if exe.exists() else None


def litellm_version(venv: Path) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def litellm_config(work: Path, upstream: str) -> Path:
    path = work / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f"      api_base: {upstream}\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
    )
    return path


# ---- load ----------------------------------------------------------------------------------
async def run_cell(url: str, prompts: Prompts, n: int, concurrency: int, stream: bool) -> dict:
    import aiohttp
    import orjson

    latencies: list[float] = []
    errors: dict[str, int] = {}
    blocked = [0]
    bodies = [orjson.dumps({"model": "bench", "stream": stream, "messages": [{"role": "user", "content": prompts.next()}]})
              for _ in range(n)]
    queue = iter(bodies)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            for body in queue:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        raw = await r.read()  # a stream is read to its end
                        if r.status != 200:
                            if r.status == 400 and b'"content_filter"' in raw:
                                blocked[0] += 1  # the guard answered (an input block): timed like any answer
                            else:
                                errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                                continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "wall_s": wall, "n": n, "errors": errors, "blocked": blocked[0]}


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


# ---- the machine ---------------------------------------------------------------------------
def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    return {"cpu": model, "cores": cores, "machine": platform.machine(), "python": platform.python_version()}


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ---- main ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="requests per cell, per target, per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--modes", nargs="+", choices=["json", "stream"], default=["json", "stream"])
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured requests per target and mode first")
    ap.add_argument("--litellm-venv", type=Path, default=Path("/tmp/rsafe-bench-litellm"))
    ap.add_argument("--no-install", action="store_true", help="skip LiteLLM if its venv is missing")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()

    started = dt.datetime.now(dt.timezone.utc)
    info = {"date": started.isoformat(timespec="seconds"), **machine(), "load_before": load_avg()}
    print(f"{info['date']}  {info['cpu']}, {info['cores']} cores, load average {info['load_before']}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="rsafe-vs-litellm-"))
    rsafe = str(Path(sys.executable).parent / "rsafe")
    procs: list[subprocess.Popen] = []
    urls: dict[str, str] = {}
    versions: dict[str, str] = {}
    try:
        up = free_port()
        upstream = f"http://127.0.0.1:{up}/v1"
        procs.append(start("upstream", [sys.executable, str(ROOT / "benchmarks" / "vs_litellm_upstream.py"), "--port",
                                        str(up)], upstream + "/models", work))
        urls["direct"] = upstream + "/chat/completions"
        if "litellm" in args.targets:
            exe = ensure_litellm(args.litellm_venv, install=not args.no_install)
            if exe is None:
                print("  litellm: not installed (--no-install): skipped", flush=True)
            else:
                port = free_port()
                env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True",
                       "LITELLM_MASTER_KEY": KEY}
                procs.append(start("litellm", [str(exe), "--config", str(litellm_config(work, upstream)), "--host",
                                               "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                                   f"http://127.0.0.1:{port}/health/liveliness", work, env=env, timeout_s=300))
                urls["litellm"] = f"http://127.0.0.1:{port}/v1/chat/completions"
                versions["litellm"] = litellm_version(args.litellm_venv)
        for name, policies in (("rsafe-patterns", ROOT / "benchmarks/policies_patterns.yaml"),
                               ("rsafe-embedded", ROOT / "policies.yaml")):
            if name not in args.targets:
                continue
            port = free_port()
            env = {"RSAFE_GATEWAY_KEYS": json.dumps([{"id": "bench", "key": KEY}]), "RSAFE_UPSTREAM_API_KEY": "sk-bench"}
            procs.append(start(name, [rsafe, "serve", "--host", "127.0.0.1", "--port", str(port), "--policies",
                                      str(policies), "--upstream", upstream, "--block-log", str(work / f"{name}.jsonl")],
                               f"http://127.0.0.1:{port}/healthz", work, env=env))
            urls[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
        names = [t for t in TARGETS if t in urls]

        pool = everyday_requests()
        if "rsafe-embedded" in urls:
            kept = screened(pool, urls["rsafe-embedded"].removesuffix("/v1/chat/completions"))
            print(f"  prompt pool: {len(kept)} of {len(pool)} everyday requests ({len(pool) - len(kept)} that the "
                  "embedded guard flags on their own left out)", flush=True)
            info["prompt_pool"] = {"kept": len(kept), "of": len(pool)}
            pool = kept
        prompts = Prompts(pool)
        for name in names:  # warm-up: lazy initialisation, connection pools, first batches
            for mode in args.modes:
                asyncio.run(run_cell(urls[name], prompts, args.warmup, 4, mode == "stream"))

        cells = [(mode, c) for mode in args.modes for c in args.concurrency]
        results: dict[tuple[str, str, int], list[dict]] = {}
        for r in range(args.rounds):
            for k, (mode, c) in enumerate(cells):
                order = names[(r + k) % len(names):] + names[: (r + k) % len(names)]
                for name in order:
                    results.setdefault((name, mode, c), []).append(
                        asyncio.run(run_cell(urls[name], prompts, args.requests, c, mode == "stream")))
            print(f"  round {r + 1}/{args.rounds} done (load average {load_avg()})", flush=True)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    info["load_after"] = load_avg()
    info["versions"] = {**versions, "rsafe-gateway": "working tree", "python": platform.python_version()}
    report(info, names, cells, results, args)


def report(info: dict, names: list[str], cells: list, results: dict, args) -> None:
    rows = []
    for mode, c in cells:
        base = [x for run in results[("direct", mode, c)] for x in run["latencies"]] if "direct" in names else []
        for name in names:
            runs = results[(name, mode, c)]
            lat = [x for run in runs for x in run["latencies"]]
            ok = len(lat)
            errors: dict[str, int] = {}
            for run in runs:
                for k, v in run["errors"].items():
                    errors[k] = errors.get(k, 0) + v
            row = {
                "target": name, "mode": mode, "concurrency": c, "requests": sum(run["n"] for run in runs), "ok": ok,
                "blocked": sum(run["blocked"] for run in runs), "errors": errors,
                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "req_per_s": ok / sum(run["wall_s"] for run in runs),
                "added_p50_ms": pct(lat, 50) - pct(base, 50) if base else None,
                "added_p99_ms": pct(lat, 99) - pct(base, 99) if base else None,
                "mean_ms": statistics.fmean(lat) if lat else None,
            }
            rows.append(row)
    print(f"\n{args.rounds} interleaved rounds x {args.requests} requests per cell and target; "
          f"load average before {info['load_before']}, after {info['load_after']}; versions {info['versions']}")
    print(f"{'mode':<7}{'c':>4}  {'target':<16}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'req/s':>9}"
          f"{'blocked':>9}  errors")
    for row in rows:
        add50 = f"{row['added_p50_ms']:9.2f}" if row["added_p50_ms"] is not None else f"{'-':>9}"
        add99 = f"{row['added_p99_ms']:9.2f}" if row["added_p99_ms"] is not None else f"{'-':>9}"
        print(f"{row['mode']:<7}{row['concurrency']:>4}  {row['target']:<16}{row['p50_ms']:9.2f}{row['p99_ms']:9.2f}"
              f"{add50}{add99}{row['req_per_s']:9.1f}{row['blocked']:9d}  {row['errors'] or ''}")
    by = {(r["target"], r["mode"], r["concurrency"]): r for r in rows}
    for mode, c in cells:
        lite, emb = by.get(("litellm", mode, c)), by.get(("rsafe-embedded", mode, c))
        if lite and emb and lite["added_p50_ms"] is not None:
            print(f"{mode} c={c}: rsafe-embedded adds {emb['added_p50_ms']:.2f} ms p50 vs LiteLLM's "
                  f"{lite['added_p50_ms']:.2f} ms; req/s {emb['req_per_s']:.1f} vs {lite['req_per_s']:.1f} "
                  f"({emb['req_per_s'] / lite['req_per_s']:.2f}x)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"info": info, "rounds": args.rounds, "requests": args.requests, "rows": rows},
                                       indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
