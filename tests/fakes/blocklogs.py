"""Synthetic block logs with the exact line format of `gateway/blocklog/writer.py`, for the log
reader's tests and the `rsafe logs stats` benchmark. Deterministic for a given seed."""

from __future__ import annotations

import gzip
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

POLICIES = ("S1", "S2", "S9", "S10", "S11", "SECRETS")
ACTIONS = {"S1": "block", "S2": "block", "S9": "block", "S10": "flag", "S11": "block", "SECRETS": "rewrite"}
MODELS = ("gpt-4o-mini", "llama-3-8b", "qwen2.5-7b")
KEYS = ("team-a", "team-b", None)
START = datetime(2026, 11, 20, 0, 0, tzinfo=timezone.utc)


def record(i: int, rng: random.Random, ts: datetime, **override: Any) -> dict[str, Any]:
    """One block-log line (as a dict). Mix: ~60% one policy fired, ~10% two, ~5% guard errors."""
    roll = rng.random()
    outcomes: list[dict[str, Any]] = []
    error = None
    fail_open: list[str] = []
    if roll < 0.05:  # guard failure: S10 fails open, S1 fails closed
        error = "guard timed out after 5s"
        if rng.random() < 0.5:
            outcomes = [{"policy": "S10", "action": "fail_open", "reason": "guard_error", "score": None}]
            fail_open = ["S10"]
        else:
            outcomes = [{"policy": "S1", "action": "block", "reason": "guard_error", "score": None}]
    else:
        for p in rng.sample(POLICIES, 2 if roll > 0.9 else 1):
            outcomes.append({"policy": p, "action": ACTIONS[p], "reason": "violated", "score": round(rng.random(), 3)})
    rank = {"allow": 0, "fail_open": 0, "flag": 1, "rewrite": 2, "block": 3}
    action = max((o["action"] for o in outcomes), key=rank.__getitem__, default="allow")
    action = "allow" if action == "fail_open" else action
    decision = "error" if error and action != "allow" else action
    guard = "embedded" if rng.random() < 0.8 else "rsafe"
    line = {
        "request_id": f"req_{rng.getrandbits(128):032x}",
        "route": "chat_completions",
        "key_id": rng.choice(KEYS),
        "model": rng.choice(MODELS),
        "direction": "input" if rng.random() < 0.7 else "output",
        "decision": decision,
        "action": action,
        "policies": [o["policy"] for o in outcomes],
        "outcomes": outcomes,
        "checked": list(POLICIES),
        "fail_open": fail_open,
        "guard": guard,
        "decided_by": guard,
        "latency_ms": round(rng.lognormvariate(2.5 if guard == "embedded" else 5.5, 0.5), 3),
        "error": error,
        "truncated": False,
        "cached": rng.random() < 0.1,
        "policy_version": "3f2a9c1d",
        "content_sha256": f"sha256:{rng.getrandbits(64):016x}",
        "content_len": rng.randint(10, 4000),
        "event": "decision",
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if decision in ("block", "error") and guard == "rsafe":
        line["reasoning"] = "The user asks for step-by-step instructions that would help hurt people; " \
                            "this falls under the policy's description of enabling violent crimes."
    line.update(override)
    return line


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
