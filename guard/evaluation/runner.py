"""Run a guard over evaluation files and collect predictions, latencies and metrics.

Works for any backend: it only speaks the `Guard` protocol. Each row becomes a
`CheckRequest` (prompt rows: the user turn, input direction; response rows: the
user turn then the assistant turn, output direction) with the policies of the
given policy file that use the model engine (or the row's own policies, when it
carries some: `guard.evaluation.data`). A row counts as predicted unsafe
when any policy is violated. A check that fails (GuardFailure, timeout) counts as
unsafe, which is what the gateway does by default (fail closed), and is counted
in `errors` so a broken backend cannot hide behind good-looking numbers.

Files with `categories` are run a second time with one policy per category (the
harness's own policies file) to score per-category detection.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from guard.evaluation.data import EvalFile, Example
from guard.evaluation.metrics import Binary, percentile, weighted_f1
from guard.policies import Direction, Policy, PolicySet
from guard.verdict import CheckRequest, Guard, Turn


def category_id(category: str) -> str:
    return category.replace("/", "_")


def engine_for(backend: str) -> str:
    """Which policies a backend judges: the patterns backend its own, every other one the model policies."""
    return "patterns" if backend == "patterns" else "model"


@functools.lru_cache(maxsize=4096)
def _row_policy_set(policies: tuple[tuple[str, str], ...]) -> PolicySet:
    """A row's own policies as a policy set (model engine; validated like a policies file)."""
    return PolicySet.from_dict({"version": 1, "policies": [{"id": pid, "description": text} for pid, text in policies]},
                               source="<row policies>")


def request_for(example: Example, policies: PolicySet, engine: str = "model", row_policies: bool = True) -> CheckRequest:
    """The check for one row: against its own policies when it carries some (unless
    `row_policies` is False: the per-category pass), else the file's."""
    if example.policies and row_policies:
        policies = _row_policy_set(example.policies)
    if example.task == "response":
        direction = Direction.OUTPUT
        conversation = (Turn("user", example.prompt), Turn("assistant", example.response or ""))
    else:
        direction = Direction.INPUT
        conversation = (Turn("user", example.prompt),)
    active = tuple(p for p in policies.active(direction) if p.engine == engine)
    return CheckRequest(direction, conversation, active, policies.version)


@dataclass
class Outcome:
    violated: list[str]
    scores: dict[str, float | None]
    latency_ms: float
    truncated: bool = False
    error: str | None = None


@dataclass
class FileRun:
    file: EvalFile
    outcomes: list[Outcome] = field(default_factory=list)
    category_outcomes: list[Outcome] | None = None
    seconds: float = 0.0


async def _check(guard: Guard, request: CheckRequest, timeout_s: float) -> Outcome:
    started = time.perf_counter()
    try:
        verdict = await asyncio.wait_for(guard.check(request), timeout_s)
    except Exception as exc:  # noqa: BLE001 - a failure is a data point, counted below
        ms = (time.perf_counter() - started) * 1000
        return Outcome([p.id for p in request.policies], {}, ms, error=f"{type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - started) * 1000
    return Outcome(verdict.violated, {k: r.score for k, r in verdict.results.items()}, ms, verdict.truncated)


async def run_examples(guard: Guard, examples: list[Example], policies: PolicySet, concurrency: int, timeout_s: float, bar: tqdm | None, engine: str = "model", row_policies: bool = True) -> list[Outcome]:
    out: list[Outcome | None] = [None] * len(examples)
    it = iter(enumerate(examples))

    async def worker() -> None:
        for i, example in it:
            out[i] = await _check(guard, request_for(example, policies, engine, row_policies), timeout_s)
            if bar is not None:
                bar.update(1)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return [o for o in out if o is not None]


async def run_all(guard: Guard, files: list[EvalFile], policies: PolicySet, category_policies: PolicySet | None, concurrency: int = 1, timeout_s: float = 30.0, progress: bool = True, engine: str = "model") -> list[FileRun]:
    runs = []
    cat_ids = {p.id for p in category_policies.policies} if category_policies else set()
    total = sum(len(f.examples) * (2 if _categorized(f, cat_ids) else 1) for f in files)
    with tqdm(total=total, desc="eval", unit="row", disable=not progress) as bar:
        for f in files:
            bar.set_postfix(file=f.name)
            started = time.perf_counter()
            run = FileRun(f, await run_examples(guard, f.examples, policies, concurrency, timeout_s, bar, engine))
            run.seconds = time.perf_counter() - started
            if category_policies is not None and _categorized(f, cat_ids):
                run.category_outcomes = await run_examples(guard, f.examples, category_policies, concurrency, timeout_s, bar, engine,
                                                           row_policies=False)
            runs.append(run)
    return runs


def _categorized(f: EvalFile, ids: set[str]) -> bool:
    return f.has_categories and any(category_id(c) in ids for e in f.examples for c in e.categories)


def summarize(runs: list[FileRun], category_policies: PolicySet | None = None) -> dict[str, Any]:
    """Everything eval.json holds: per-file metrics, weighted averages, per-category F1."""
    files: dict[str, Any] = {}
    for run in runs:
        truth = [e.unsafe for e in run.file.examples]
        pred = [bool(o.violated) for o in run.outcomes]
        lat = [o.latency_ms for o in run.outcomes]
        entry: dict[str, Any] = {
            "path": str(run.file.path),
            "task": run.file.task,
            **Binary.of(truth, pred).as_dict(),
            "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "mean": sum(lat) / len(lat) if lat else 0.0},
            "truncated": sum(o.truncated for o in run.outcomes),
            "errors": sum(o.error is not None for o in run.outcomes),
            "error_examples": _error_examples(run.outcomes),
            "skipped_rows": run.file.skipped,
            "seconds": run.seconds,
            "policies_flagged": _flag_counts(run.outcomes),
        }
        if run.category_outcomes is not None and category_policies is not None:
            entry["categories"] = _per_category(run, category_policies)
        files[run.file.name] = entry
    averages = {}
    for task in ("prompt", "response"):
        rows = [(v["f1"], v["n"]) for v in files.values() if v["task"] == task]
        averages[task] = {"weighted_f1": weighted_f1(rows), "files": sum(1 for v in files.values() if v["task"] == task), "n": sum(n for _, n in rows)}
    return {"files": files, "averages": averages}


def _error_examples(outcomes: list[Outcome], limit: int = 3) -> list[str]:
    """The first few distinct failure messages, so a report says why checks failed, not only how many."""
    seen: list[str] = []
    for o in outcomes:
        if o.error is not None and o.error[:300] not in seen and len(seen) < limit:
            seen.append(o.error[:300])
    return seen


def _flag_counts(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.error is None:
            for pid in o.violated:
                counts[pid] = counts.get(pid, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _per_category(run: FileRun, category_policies: PolicySet) -> dict[str, Any]:
    policies: tuple[Policy, ...] = category_policies.policies
    per: dict[str, Any] = {}
    for policy in policies:
        truth = [any(category_id(c) == policy.id for c in e.categories) for e in run.file.examples]
        if not any(truth):
            continue
        pred = [policy.id in o.violated for o in run.category_outcomes or []]
        per[policy.id] = Binary.of(truth, pred).as_dict()
    any_truth = [e.unsafe for e in run.file.examples]
    any_pred = [bool(o.violated) for o in run.category_outcomes or []]
    f1s = [v["f1"] for v in per.values()]
    return {
        "per_category": per,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "any_category": Binary.of(any_truth, any_pred).as_dict(),
        "policies_file": category_policies.source,
    }
