"""Watching GRPO for collapse: the verdicts it samples and the reward spread within each group.

GRPO learns only from differences inside a group of rollouts for one prompt: a
group whose rollouts all earn the same reward has zero advantage. A policy that
drifts to one constant answer ("safe" everywhere, or "unsafe" everywhere) shows
up as one verdict's share going to 1 and the within-group spread going to 0,
long before held-out scores are computed. `RolloutMonitor` wraps the first
reward function (it sees every completion of every step, in TRL's order: each
prompt's `num_generations` rollouts next to each other) and records, per step:

- the share of rollouts answered `safe`, `unsafe`, and unreadable (the guard's
  parser, as the rewards read them);
- the mean within-group standard deviation of that reward, and the share of
  groups whose rollouts all earned the same reward (no learning signal).

`summary()` averages them over windows of steps; `training.demo` prints them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from training.rsafe.rewards import completion_text, read_answer


class RolloutMonitor:
    def __init__(self, num_generations: int):
        self.num_generations = num_generations
        self.steps: list[dict[str, float]] = []

    def wrap(self, reward: Callable[..., list[float | None]]) -> Callable[..., list[float | None]]:
        @wraps(reward)
        def monitored(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
            values = reward(completions, **kwargs)
            self.record(completions, values, kwargs.get("policy_ids"))
            return values

        return monitored

    def record(self, completions: Sequence[Any], values: Sequence[float | None], policy_ids: Sequence[Any] | None = None) -> None:
        ids = list(policy_ids or [()] * len(completions))
        verdicts = []
        for c, p in zip(completions, ids):
            parsed = read_answer(completion_text(c), p or ())
            verdicts.append(parsed.label if parsed is not None else "unreadable")
        n, g = len(verdicts), self.num_generations
        stds, flat = [], 0
        for start in range(0, n - g + 1, g):
            group = [float(v) for v in values[start : start + g] if v is not None]
            if len(group) > 1:
                stds.append(statistics.pstdev(group))
                flat += max(group) - min(group) < 1e-9
        self.steps.append({
            **{f"share_{k}": verdicts.count(k) / max(1, n) for k in ("safe", "unsafe", "unreadable")},
            "group_reward_std": statistics.mean(stds) if stds else 0.0,
            "flat_groups": flat / max(1, len(stds)),
        })

    def summary(self, windows: int = 4) -> list[dict[str, float]]:
        """Means over `windows` equal runs of consecutive steps (first to last), with their step range."""
        if not self.steps:
            return []
        size = max(1, -(-len(self.steps) // windows))
        out = []
        for start in range(0, len(self.steps), size):
            chunk = self.steps[start : start + size]
            row = {k: round(statistics.mean(s[k] for s in chunk), 3) for k in chunk[0]}
            out.append({"steps": f"{start + 1}-{start + len(chunk)}"} | row)
        return out

    def collapsed(self, last: int = 50, threshold: float = 0.95) -> bool:
        """True when, over the last `last` steps, one verdict made up `threshold` of the rollouts."""
        tail = self.steps[-last:]
        if not tail:
            return False
        return any(statistics.mean(s[f"share_{k}"] for s in tail) >= threshold for k in ("safe", "unsafe", "unreadable"))
