"""Binary metrics on the `unsafe` class, the way the guard-model papers report them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Binary:
    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, truth: Sequence[bool], pred: Sequence[bool]) -> Binary:
        if len(truth) != len(pred):
            raise ValueError("truth and predictions differ in length")
        tp = sum(1 for t, p in zip(truth, pred) if t and p)
        fp = sum(1 for t, p in zip(truth, pred) if not t and p)
        fn = sum(1 for t, p in zip(truth, pred) if t and not p)
        return cls(tp, fp, fn, len(truth) - tp - fp - fn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """F1 on unsafe; 0 when there is no unsafe row and none predicted (nothing to find)."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "n": self.n,
            "unsafe": self.tp + self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "fpr": self.fpr,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def weighted_f1(rows: Iterable[tuple[float, int]]) -> float | None:
    """Sample-weighted average of (f1, n) pairs, as in the GuardReasoner/RSafe tables."""
    rows = list(rows)
    total = sum(n for _, n in rows)
    return sum(f * n for f, n in rows) / total if total else None
