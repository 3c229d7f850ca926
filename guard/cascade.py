"""The `cascade` backend: a cheap guard first, the reasoning guard only where needed.

Reasoning verdicts cost hundreds of tokens; most traffic is clearly fine or
clearly not. The first guard (the embedded classifier by default) scores every
policy; a policy goes to the second guard (the RSafe reasoning guard) when

- it asks for it: `reasoning: always` in policies.yaml, or `route: {ID: always}`
  in the options (sent at once, concurrently with the first guard);
- the first guard is unsure: its score lies inside the uncertainty band
  (`band: [0.2, 0.8]` by default, `bands: {ID: [lo, hi]}` per policy);
- the first guard gave no result for a model policy.

A policy with `reasoning: never` (or `route: {ID: never}`) is always decided by
the first guard. `Verdict.decided_by` is the first guard's name, the second's,
or `first+second` when both decided some policies; the reasoning starts with a
line naming the escalated policies and their scores.

If the second guard fails, the check fails (`GuardFailure`: each policy's
failure mode applies), unless `on_second_failure: first` says to keep the first
guard's verdict for the escalated policies.

Options:
    first: embedded            first_options: {...}
    second: rsafe              second_options: {...}   (the rsafe options, see guard.rsafe.backend)
    url / model / api_key      shortcuts for second_options (what --guard-url/--guard-model set)
    band: [0.2, 0.8]           bands: {S7: [0.1, 0.9]}
    route: {S1: always, S6: never}
    on_second_failure: fail | first
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from guard.errors import GuardConfigError, GuardFailure, validate_options
from guard.policies import Policy, PolicySet
from guard.verdict import CheckRequest, Guard, PolicyResult, Verdict

Band = tuple[float, float]


class CascadeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    first: str = "embedded"
    first_options: dict[str, Any] = {}
    second: str = "rsafe"
    second_options: dict[str, Any] = {}
    band: Band = (0.2, 0.8)
    bands: dict[str, Band] = {}
    route: dict[str, Literal["always", "never", "auto"]] = {}
    on_second_failure: Literal["fail", "first"] = "fail"

    @model_validator(mode="after")
    def _ordered(self) -> CascadeOptions:
        for name, (lo, hi) in [("band", self.band), *self.bands.items()]:
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"{name}: need 0 <= low <= high <= 1, got [{lo}, {hi}]")
        return self


class CascadeGuard:
    def __init__(self, first: Guard, second: Guard, opts: CascadeOptions | None = None) -> None:
        self.first = first
        self.second = second
        self.opts = opts or CascadeOptions()
        self.name = "cascade"
        self.cache_tag = f"cascade:{getattr(first, 'cache_tag', first.name)}:{getattr(second, 'cache_tag', second.name)}"
        self.escalations = 0  # policies sent to the second guard (observable in tests/metrics)

    def _route(self, policy: Policy) -> str:
        return self.opts.route.get(policy.id) or policy.reasoning

    def _uncertain(self, policy: Policy, result: PolicyResult | None) -> bool:
        if result is None:
            return policy.engine == "model"
        if result.score is None:
            return False
        lo, hi = self.opts.bands.get(policy.id, self.opts.band)
        return lo <= result.score <= hi

    def _sub(self, request: CheckRequest, policies: list[Policy]) -> CheckRequest:
        return CheckRequest(request.direction, request.conversation, tuple(policies), request.policy_version)

    async def check(self, request: CheckRequest) -> Verdict:
        start = time.perf_counter()
        forced = [p for p in request.policies if self._route(p) == "always" and p.engine == "model"]
        forced_ids = {p.id for p in forced}
        rest = [p for p in request.policies if p.id not in forced_ids]

        forced_task = asyncio.ensure_future(self.second.check(self._sub(request, forced))) if forced else None
        unsure_task = None
        try:
            first = await self.first.check(self._sub(request, rest)) if rest else Verdict(self.first.name)
            unsure = [p for p in rest if self._route(p) != "never" and self._uncertain(p, first.results.get(p.id))]
            if unsure:
                unsure_task = asyncio.ensure_future(self.second.check(self._sub(request, unsure)))
            second_parts = await self._second(forced_task, unsure_task)
        except BaseException:
            for task in (forced_task, unsure_task):
                if task is not None and not task.done():
                    task.cancel()
            raise

        results = {pid: r for pid, r in first.results.items() if pid in {p.id for p in rest}}
        escalated: list[str] = []
        reasoning = []
        for verdict in second_parts:
            for pid, r in verdict.results.items():
                results[pid] = r
                escalated.append(pid)
            if verdict.reasoning:
                reasoning.append(verdict.reasoning)
        self.escalations += len(escalated)
        if escalated:
            scores = ", ".join(
                f"{pid}={first.results[pid].score:.2f}" if pid in first.results and first.results[pid].score is not None
                else f"{pid}=forced" if pid in forced_ids else pid
                for pid in escalated
            )
            reasoning.insert(0, f"[cascade] decided by {self.second.name}: {scores}")
        if escalated and len(escalated) == len(results):
            decided = self.second.name
        elif escalated:
            decided = f"{self.first.name}+{self.second.name}"
        else:
            decided = first.decided_by or self.first.name
        return Verdict(
            backend=self.name,
            results=results,
            reasoning="\n".join(reasoning) or first.reasoning,
            latency_ms=(time.perf_counter() - start) * 1000,
            decided_by=decided,
            truncated=first.truncated or any(v.truncated for v in second_parts),
        )

    async def _second(self, forced_task: asyncio.Future | None, unsure_task: asyncio.Future | None) -> list[Verdict]:
        out = []
        if forced_task is not None:
            out.append(await forced_task)  # a forced policy has no first opinion: its failure is the check's
        if unsure_task is not None:
            try:
                out.append(await unsure_task)
            except Exception as exc:
                if self.opts.on_second_failure != "first":
                    if isinstance(exc, GuardFailure):
                        raise
                    raise GuardFailure(f"cascade second guard failed: {exc!r}") from exc
                # keep the first guard's results for the unsure policies (already in `first`)
        return out

    async def aclose(self) -> None:
        await asyncio.gather(self.first.aclose(), self.second.aclose())


def parse_options(options: dict[str, Any]) -> CascadeOptions:
    """Validate; `url`/`urls`/`model`/`api_key` at the top level are the second guard's.

    That shortcut is what lets `--guard cascade --guard-url URL --guard-model NAME`
    (and RSAFE_GUARD_URL / RSAFE_GUARD_MODEL) point the cascade's reasoning guard
    at a server without knowing the nesting.
    """
    data = dict(options)
    second = dict(data.get("second_options") or {})
    for key in ("url", "urls", "model", "api_key"):
        if key in data:
            second[key] = data.pop(key)
    if second:
        data["second_options"] = second
    return validate_options(CascadeOptions, data, "cascade guard options")


def build(options: dict[str, Any], policies: PolicySet) -> CascadeGuard:
    """Registry factory (`guard.cascade:build`): builds both guards through the registry."""
    from guard.registry import build_guard

    opts = parse_options(options)
    if "cascade" in (opts.first, opts.second):
        raise GuardConfigError("a cascade cannot contain another cascade")
    first = build_guard(opts.first, opts.first_options, policies)
    second = build_guard(opts.second, opts.second_options, policies)
    return CascadeGuard(first, second, opts)
