"""Synthetic block logs in the gateway's record (`gateway/blocklog/schema.py`, as the writer writes it),
for the log reader's tests and the `rsafe logs stats` benchmark. Deterministic for a given seed."""

from __future__ import annotations

import gzip
import os
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from gateway.blocklog.schema import Outcome, Record, decision_of, line
from gateway.pipeline import strictest

POLICIES = ("S1", "S2", "S9", "S10", "S11", "SECRETS")
ACTIONS = {"S1": "block", "S2": "block", "S9": "block", "S10": "flag", "S11": "block", "SECRETS": "rewrite"}
MODELS = ("gpt-4o-mini", "llama-3-8b", "qwen2.5-7b")
KEYS = ("team-a", "team-b", None)
START = datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)


def record(i: int, rng: random.Random, ts: datetime, **override: Any) -> dict[str, Any]:
    """One block-log line (as a dict). Mix: ~60% one policy fired, ~10% two, ~5% guard errors."""
    roll = rng.random()
    outcomes: list[Outcome] = []
    error = None
    if roll < 0.05:  # guard failure: S10 fails open, S1 fails closed
        error = "guard timed out after 5s"
        if rng.random() < 0.5:
            outcomes = [Outcome("S10", "fail_open", "guard_error", None)]
        else:
            outcomes = [Outcome("S1", "block", "guard_error", None)]
    else:
        for p in rng.sample(POLICIES, 2 if roll > 0.9 else 1):
            outcomes.append(Outcome(p, ACTIONS[p], "violated", round(rng.random(), 3)))
    action = strictest(o.action for o in outcomes if o.action != "fail_open")
    decision = decision_of(action, error)
    guard = "embedded" if rng.random() < 0.8 else "rsafe"
    reasoning = None
    request_id = f"req_{rng.getrandbits(128):032x}"
    key_id, model = rng.choice(KEYS), rng.choice(MODELS)
    direction = "input" if rng.random() < 0.7 else "output"
    latency_ms = round(rng.lognormvariate(2.5 if guard == "embedded" else 5.5, 0.5), 3)
    cached = rng.random() < 0.1
    digest, length = f"sha256:{rng.getrandbits(64):016x}", rng.randint(10, 4000)
    if decision in ("block", "error") and guard == "rsafe":
        reasoning = "The user asks for step-by-step instructions that would help hurt people; " \
                    "this falls under the policy's description of enabling violent crimes."
    out = line(Record(
        request_id=request_id, route="chat_completions", key_id=key_id, model=model, direction=direction,
        decision=decision, action=action, policies=[o.policy for o in outcomes], outcomes=outcomes,
        checked=list(POLICIES), fail_open=[o.policy for o in outcomes if o.action == "fail_open"], guard=guard,
        decided_by=guard, latency_ms=latency_ms, error=error, policy_version="3f2a9c1d", content_sha256=digest,
        content_len=length, reasoning=reasoning, cached=cached, ts=ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    ))
    out.update(override)
    return out


def write_log(path: Path, n: int, *, files: int = 1, gzip_rotated: int = 0, seed: int = 0,
              start: datetime = START, step_s: float = 1.0) -> list[Path]:
    """`n` lines split over `files` files (`path.K` ... `path.1`, then `path`), oldest first;
    the `gzip_rotated` oldest rotated files are gzip-compressed. mtimes are set like a real
    rotation (each file's last write). Returns the files, oldest first."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_file = -(-n // files)
    written: list[Path] = []
    i = 0
    for k in range(files - 1, -1, -1):
        target = path if k == 0 else path.with_name(f"{path.name}.{k}")
        lines = []
        for _ in range(min(per_file, n - i)):
            ts = start + timedelta(seconds=i * step_s)
            lines.append(orjson.dumps(record(i, rng, ts)))
            i += 1
        data = b"\n".join(lines) + b"\n"
        if k > 0 and (files - 1 - k) < gzip_rotated:
            target = target.with_name(target.name + ".gz")
            with gzip.open(target, "wb", compresslevel=1) as fh:
                fh.write(data)
        else:
            target.write_bytes(data)
        last = (start + timedelta(seconds=(i - 1) * step_s)).timestamp()
        os.utime(target, (last, last))
        written.append(target)
    return written


def read_lines(files: list[Path]) -> list[dict[str, Any]]:
    """Every line of `files` (gzip-compressed or not), decoded, in order."""
    out: list[dict[str, Any]] = []
    for f in files:
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        out += [orjson.loads(line) for line in data.splitlines() if line]
    return out


def whole_lines(path: Path) -> list[dict[str, Any]]:
    """Every whole line of a block log a gateway may still be writing (a line being written is not parsed)."""
    data = path.read_bytes() if path.exists() else b""
    return list(map(orjson.loads, data[: data.rfind(b"\n") + 1].splitlines()))


def request_lines(path: Path, request_id: str, count: int = 1, wait_s: float = 5.0) -> list[dict[str, Any]]:
    """The block-log lines of one request, read from a log a gateway writes in the background:
    whole lines only (a line still being written is not parsed), once `count` are there (or
    after `wait_s`), then once more after a short pause so that a line written late is seen."""

    def read() -> list[dict[str, Any]]:
        return [x for x in whole_lines(path) if x["request_id"] == request_id]

    deadline = time.monotonic() + wait_s
    while len(read()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    return read()
