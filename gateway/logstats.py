"""`rsafe logs stats`: counts, rates, latency percentiles and failure-mode activations.

What is counted (one block-log line = one decision on one direction of one request):
- per decision: allow, flag, rewrite, block, error, and `fail_open` on its own: a request
  that went through only because a guard failed and its policy fails open is never a pass;
- per policy: how often each action fired, and its guard failures split into fail-closed
  (treated as violated) and fail-open (let through);
- per hour or day: decisions and blocks;
- guard latency percentiles, overall and per guard backend.

Speed: `gateway/logscan.py` scans each file in one pass with no per-line Python code on
the common path; several files (a rotated log) are scanned by a process pool, one file per
task, and the partial counts merged. 1M lines take a few seconds (benchmarks/logs_stats.py).
"""

from __future__ import annotations

import os
from array import array
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.logcache import StatsCache
from gateway.logread import DECISIONS, FAIL_OPEN, Filter, log_files, ts_to_epoch

PERCENTILES = (50, 90, 95, 99)
_PARALLEL_BYTES = 8 * 1024 * 1024  # below this, a process pool costs more than it saves


@dataclass
class Stats:
    by: str = "hour"  # time buckets: hour or day
    lines: int = 0
    unreadable: int = 0
    first: str | None = None
    last: str | None = None
    decisions: Counter = field(default_factory=Counter)
    directions: Counter = field(default_factory=Counter)
    policies: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    buckets: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    fail_open: int = 0  # policy outcomes let through by a failure mode
    fail_closed: int = 0  # policy outcomes treated as violated because the guard failed
    guard_errors: int = 0  # decisions with a guard error
    cached: int = 0
    truncated: int = 0
    latency: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))

    def merge(self, other: Stats) -> Stats:
        self.lines += other.lines
        self.unreadable += other.unreadable
        if other.first and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last and (self.last is None or other.last > self.last):
            self.last = other.last
        self.decisions.update(other.decisions)
        self.directions.update(other.directions)
        for k, v in other.policies.items():
            self.policies[k].update(v)
        for k, v in other.buckets.items():
            self.buckets[k].update(v)
        self.fail_open += other.fail_open
        self.fail_closed += other.fail_closed
        self.guard_errors += other.guard_errors
        self.cached += other.cached
        self.truncated += other.truncated
        for k, v in other.latency.items():
            self.latency[k].extend(v)
        return self

    @property
    def hours(self) -> float:
        if not (self.first and self.last):
            return 0.0
        return max((ts_to_epoch(self.last) - ts_to_epoch(self.first)) / 3600, 1 / 60)

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able numbers (what `--json` prints and the renderer shows)."""
        total = self.lines or 1
        hours = self.hours or 1.0
        everything = np.concatenate([np.frombuffer(a, dtype="d") for a in self.latency.values()]) \
            if self.latency else np.empty(0)
        return {
            "lines": self.lines,
            "unreadable": self.unreadable,
            "from": self.first,
            "to": self.last,
            "hours": round(self.hours, 3),
            "by": self.by,
            "decisions": {
                d: {"count": self.decisions[d], "share": self.decisions[d] / total, "per_hour": self.decisions[d] / hours}
                for d in (*DECISIONS, FAIL_OPEN) if self.decisions[d]
            },
            "directions": dict(self.directions),
            "policies": {
                p: {**dict(c), "total": sum(v for k, v in c.items() if k != "guard_error"),
                    "share": sum(v for k, v in c.items() if k != "guard_error") / total,
                    "per_hour": sum(v for k, v in c.items() if k != "guard_error") / hours}
                for p, c in sorted(self.policies.items(), key=lambda kv: -sum(kv[1].values()))
            },
            "buckets": {k: dict(v) for k, v in sorted(self.buckets.items())},
            "failure_mode": {"fail_open": self.fail_open, "fail_closed": self.fail_closed,
                             "decisions_with_guard_error": self.guard_errors},
            "cached": self.cached,
            "truncated": self.truncated,
            "latency_ms": {
                "all": _percentiles(everything),
                **{g: _percentiles(np.frombuffer(a, dtype="d")) for g, a in sorted(self.latency.items())},
            },
        }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"count": 0}
    qs = np.percentile(values, PERCENTILES)
    return {"count": int(values.size), **{f"p{p}": round(float(q), 3) for p, q in zip(PERCENTILES, qs)},
            "max": round(float(values.max()), 3)}


def _plain(s: Stats) -> Stats:
    """defaultdicts with lambdas do not pickle: plain containers (for the pool and the cache)."""
    s.policies, s.buckets, s.latency = dict(s.policies), dict(s.buckets), dict(s.latency)
    return s


def _scan_task(args: tuple[str, Filter, str]) -> Stats:
    from gateway.logscan import scan_file

    path, filt, by = args
    return _plain(scan_file(Path(path), filt, by))


def compute(path: Path, filt: Filter | None = None, by: str = "hour", workers: int | None = None,
            cache: StatsCache | None = None) -> Stats:
    """Stats over every file of the block log (rotated and .gz included). With a `cache`,
    rotated files already counted (same file, same filter) are not scanned again."""
    filt = filt or Filter()
    files = log_files(path)
    if filt.since:  # a rotated file last written before `since` holds nothing newer
        cutoff = ts_to_epoch(filt.since)
        files = [f for f in files if f.stat().st_mtime >= cutoff - 1]
    total = Stats(by=by)
    keys: dict[Path, str | None] = {}
    if cache is not None:
        todo = []
        for f in files:
            keys[f] = None if f == Path(path) else cache.key(f, filt, by)
            cached = cache.get(keys[f])
            if cached is None:
                todo.append(f)
            else:
                total.merge(cached)
        files = todo
    workers = workers if workers is not None else min(len(files), os.cpu_count() or 1)
    big = sum(f.stat().st_size for f in files) >= _PARALLEL_BYTES
    if workers > 1 and len(files) > 1 and big:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_scan_task, [(str(f), filt, by) for f in files]))
    else:
        from gateway.logscan import scan_file

        parts = [_plain(scan_file(f, filt, by)) for f in files]
    for f, part in zip(files, parts):
        if cache is not None:
            cache.put(keys.get(f), part)
        total.merge(part)
    return total


def dumps(summary: dict[str, Any]) -> bytes:
    return orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
