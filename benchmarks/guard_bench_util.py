"""Shared helpers for the embedded guard's quality benchmarks (everyday_benign.py, custom_policies.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from guard.policies import Direction, Policy, PolicySet
from guard.registry import build_guard
from guard.verdict import CheckRequest, Turn

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def guard_for(policies: PolicySet, weights: str | None):
    """The embedded guard with the policy file's own guard options (`--weights` overrides theirs)."""
    options = dict(policies.settings.guard.options) if policies.settings.guard.backend == "embedded" else {}
    return build_guard("embedded", {**options, **({"weights": weights} if weights else {})}, policies)


async def check_all(guard, rows: list[dict], policies_for, concurrency: int = 16):
    """Verdicts for rows {text, direction?, context?}; policies_for(direction) -> policies in force."""
    sem = asyncio.Semaphore(concurrency)

    async def check_row(row):
        direction = Direction(row.get("direction", "input"))
        if direction is Direction.OUTPUT:
            conv = (Turn("user", row.get("context") or ""), Turn("assistant", row["text"]))
        else:
            conv = (Turn("user", row["text"]),)
        async with sem:
            return await guard.check(CheckRequest(direction, conv, policies_for(direction), "bench"))

    return await asyncio.gather(*(check_row(r) for r in rows))


def model_policies(ps: PolicySet, direction: Direction) -> tuple[Policy, ...]:
    return tuple(p for p in ps.active(direction) if p.engine == "model")
