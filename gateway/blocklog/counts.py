"""The counts `rsafe logs stats` reports (`Stats`): filled by one file's scan (scan.py),
merged across files and formatted by stats.py. Its own module so that neither imports the other."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.blocklog.reader import DECISIONS, FAIL_OPEN, ts_to_epoch

PERCENTILES = (50, 90, 95, 99)


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


