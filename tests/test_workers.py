"""`rsafe serve --workers 2` as a real process tree, against the fake upstream on loopback.

What several processes could get wrong, each checked for real: both workers answer on the
one port; block-log lines longer than PIPE_BUF, written by both workers at once while the
file rotates, come out whole; /metrics from either worker counts every request; an edit
of policies.yaml reaches every worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.blocklog.reader import log_files
from tests.procs import rsafe_server

POLICIES = """
version: 1
settings:
  guard: {backend: patterns}
  log_content: true
policies:
  - id: BANNED
    engine: patterns
    keywords: [{keywords}]
    message: Blocked by BANNED.
"""
LONG = "x" * 9000  # a block-log line well over PIPE_BUF (4096 bytes)
MAX_BYTES = 100_000  # the block log rotates every ~10 lines


def write_policies(path: Path, keywords: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(POLICIES.replace("{keywords}", keywords))
    tmp.replace(path)


@pytest.fixture(scope="module")
def workers(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    policies = tmp / "policies.yaml"
    write_policies(policies, "forbidden-word")
    env = {"RSAFE_BLOCK_LOG_MAX_BYTES": str(MAX_BYTES), "RSAFE_BLOCK_LOG_BACKUPS": "200", "RSAFE_POLICIES_POLL_S": "0.2"}
    args = ["serve", "--workers", "2", "--guard", "patterns", "--policies", str(policies),
            "--block-log", str(tmp / "blocks.jsonl"), "--upstream", fake.state.url + "/v1", "--log-level", "warning"]
    with rsafe_server(*args, env=env) as (base, proc):
        yield {"base": base, "policies": policies, "log": tmp / "blocks.jsonl", "proc": proc}


async def _chat(base: str, texts: list[str], concurrency: int = 16) -> list[tuple[str, int]]:
    """(worker pid, HTTP status) per text, sent through the official client, a new connection
    for each request (so the kernel can hand them to either worker)."""
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-test", http_client=http, max_retries=0)
        gate = asyncio.Semaphore(concurrency)

        async def send(text: str) -> tuple[str, int]:
            async with gate:
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="echo", messages=[{"role": "user", "content": text}])
                    return raw.headers["x-rsafe-worker"], raw.status_code
                except openai.APIStatusError as exc:
                    return exc.response.headers["x-rsafe-worker"], exc.status_code

        return await asyncio.gather(*(send(t) for t in texts))


def _until_both_workers(base: str, text: str, batch: int = 20, rounds: int = 25) -> list[tuple[str, int]]:
    """Send `text` in batches until both workers have answered some (the kernel hands an idle
    shared socket's connections to whichever worker wakes first, so a short batch can land on
    one worker only): every answer, from both."""
    answers: list[tuple[str, int]] = []
    for _ in range(rounds):
        answers += asyncio.run(_chat(base, [text] * batch))
        if len({pid for pid, _ in answers}) == 2:
            break
    return answers


def _requests_total(metrics: str, route: str) -> float:
    pattern = rf'^rsafe_requests_total\{{route="{route}",status="(\d+)"\}} ([0-9.e+]+)$'
    return sum(float(m.group(2)) for m in re.finditer(pattern, metrics, re.M))


def test_workers_share_the_port_log_whole_lines_and_count_every_request(workers):
    base = workers["base"]
    texts = [f"request {i} {'forbidden-word ' + LONG if i % 2 else 'hello'}" for i in range(120)]
    answers = asyncio.run(_chat(base, texts))
    statuses = [status for _, status in answers]
    assert statuses == [400 if i % 2 else 200 for i in range(120)]
    extra = _until_both_workers(base, "hello") if len({pid for pid, _ in answers}) < 2 else []
    assert {status for _, status in extra} <= {200}
    pids = {pid for pid, _ in answers + extra}
    assert len(pids) == 2, f"one worker answered everything: {pids}"

    # every blocked request is one whole JSON line, though both workers wrote at once and rotated
    deadline = time.monotonic() + 10
    while True:
        files = log_files(workers["log"])
        lines = [line for f in files for line in f.read_bytes().split(b"\n") if line]
        if len(lines) >= 60 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(files) > 3, "the test meant the file to rotate while both workers wrote"
    events = [json.loads(line) for line in lines]  # raises on a torn or interleaved line
    blocked = sorted(e["content"] for e in events if e["decision"] == "block")
    assert blocked == sorted(t for i, t in enumerate(texts) if i % 2)
    assert all(f.read_bytes().endswith(b"\n") for f in files)
    # rotation is one event both workers see: every rotated file is full (no second rotation on
    # the heels of the first, leaving a sliver, and no worker appending to a file renamed away)
    longest = max(len(line) + 1 for line in lines)
    sizes = [f.stat().st_size for f in files]
    assert all(MAX_BYTES - longest < size <= MAX_BYTES for size in sizes[:-1]), sizes

    # /metrics from either worker: the requests of both
    seen: set[str] = set()
    for _ in range(40):
        r = httpx.get(base + "/metrics", headers={"connection": "close"})
        seen.add(r.headers["x-rsafe-worker"])
        assert _requests_total(r.text, "chat_completions") == 120 + len(extra)
        if seen == pids:
            break
    assert seen == pids, "the scrapes did not reach both workers"


def test_every_worker_reloads_an_edited_policies_file(workers):
    base = workers["base"]
    before = httpx.get(base + "/readyz").json()["policy_version"]
    write_policies(workers["policies"], "forbidden-word, newly-banned")
    versions: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(base + "/readyz", headers={"connection": "close"})
        versions[r.headers["x-rsafe-worker"]] = r.json()["policy_version"]
        if len(versions) == 2 and before not in versions.values():
            break
        time.sleep(0.05)
    assert len(versions) == 2 and before not in versions.values(), versions
    # and each worker enforces the new keyword
    answers = _until_both_workers(base, "this is newly-banned")
    assert len({pid for pid, _ in answers}) == 2
    assert {status for _, status in answers} == {400}
    metrics = httpx.get(base + "/metrics").text
    assert re.search(r'^rsafe_policy_reloads_total\{result="ok"\} 2\.0$', metrics, re.M), "one reload per worker"


def test_block_log_on_a_shared_stdout_pipe_keeps_lines_whole(fake, tmp_path):
    """`--block-log -` with two workers: both write into one pipe, where a write over PIPE_BUF is
    not atomic; every line still arrives whole (one locked write per line)."""
    policies = tmp_path / "policies.yaml"
    write_policies(policies, "forbidden-word")
    lines: list[bytes] = []
    args = ["serve", "--workers", "2", "--guard", "patterns", "--policies", str(policies), "--block-log", "-",
            "--upstream", fake.state.url + "/v1", "--log-level", "warning"]
    with (tmp_path / "stderr.txt").open("w") as err:
        with rsafe_server(*args, stdout=subprocess.PIPE, stderr=err) as (base, proc):
            reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.buffer.readline, b"")), daemon=True)
            reader.start()
            texts: list[str] = []
            answers: list[tuple[str, int]] = []
            for round_ in range(25):  # until both workers have written (the kernel may favour one)
                batch = [f"line {round_}.{i} forbidden-word {LONG * 3}" for i in range(40)]  # ~27 KB lines
                texts += batch
                answers += asyncio.run(_chat(base, batch))
                if len({p for p, _ in answers}) == 2:
                    break
            assert {s for _, s in answers} == {400} and len({p for p, _ in answers}) == 2
            deadline = time.monotonic() + 10
            while len(lines) < len(texts) and time.monotonic() < deadline:
                time.sleep(0.1)
    events = [json.loads(line) for line in lines]  # raises on an interleaved line
    assert sorted(e["content"] for e in events) == sorted(texts)
