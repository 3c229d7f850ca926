"""Cascade routing: first guard, uncertainty band, forced and never-reasoning policies, failures."""

from __future__ import annotations

import asyncio
import time

import pytest

from guard.cascade import CascadeGuard, parse_options
from guard.errors import GuardConfigError, GuardFailure
from guard.registry import build_guard
from tests._rsafe_support import POLICIES, ScriptedGuard, policy_set, request

# POLICIES: S1 auto, S2 auto, S9 reasoning: always, S6 reasoning: never


def _cascade(first_scores, second_scores=None, **opts) -> tuple[CascadeGuard, ScriptedGuard, ScriptedGuard]:
    first = ScriptedGuard("embedded", first_scores)
    second = ScriptedGuard("rsafe", second_scores or {p.id: 0.0 for p in POLICIES})
    return CascadeGuard(first, second, parse_options(opts)), first, second


async def test_confident_first_guard_decides_alone() -> None:
    guard, _, second = _cascade({"S1": 0.02, "S2": 0.97, "S6": 0.45}, band=[0.2, 0.8])
    verdict = await guard.check(request("x", policies=[p for p in POLICIES if p.id != "S9"]))
    assert second.seen == []  # S6 sits in the band but says reasoning: never
    assert verdict.decided_by == "embedded"
    assert verdict.violated == ["S2"]
    assert verdict.reasoning == "embedded says so"


async def test_uncertain_scores_go_to_the_reasoning_guard() -> None:
    guard, _, second = _cascade({"S1": 0.45, "S2": 0.05, "S6": 0.6}, {"S1": 1.0})
    verdict = await guard.check(request("x", policies=[p for p in POLICIES if p.id != "S9"]))
    assert second.seen == [("S1",)]
    assert verdict.results["S1"].violated and not verdict.results["S2"].violated
    assert verdict.results["S6"].violated  # decided by the first guard (0.6 >= 0.5)
    assert verdict.decided_by == "embedded+rsafe"
    assert verdict.reasoning.startswith("[cascade] decided by rsafe: S1=0.45")
    assert guard.escalations == 1


async def test_forced_policy_runs_concurrently_with_the_first_guard() -> None:
    first = ScriptedGuard("embedded", {"S1": 0.01, "S2": 0.01, "S6": 0.0}, delay=0.5)
    second = ScriptedGuard("rsafe", {"S9": 1.0}, delay=0.5)
    guard = CascadeGuard(first, second, parse_options({}))
    start = time.perf_counter()
    verdict = await guard.check(request("x"))
    assert time.perf_counter() - start < 0.9  # not 1.0: both ran at once (0.4 s of slack for a busy machine)
    assert first.seen == [("S1", "S2", "S6")] and second.seen == [("S9",)]
    assert verdict.violated == ["S9"] and set(verdict.results) == {"S1", "S2", "S6", "S9"}


async def test_route_option_overrides_policy_setting_and_bands_per_policy() -> None:
    guard, _, second = _cascade(
        {"S1": 0.3, "S2": 0.3, "S6": 0.3, "S9": 0.99},
        {"S6": 1.0, "S2": 0.0},
        route={"S9": "never", "S6": "always"},
        bands={"S1": [0.4, 0.6]},
    )
    verdict = await guard.check(request("x"))
    assert set(second.seen) == {("S6",), ("S2",)}  # S6 forced; S2 in the default band; S1 outside its band
    assert verdict.results["S9"].violated  # never: first guard's 0.99
    assert verdict.results["S6"].violated and not verdict.results["S1"].violated


async def test_all_escalated_is_decided_by_second() -> None:
    guard, _, _ = _cascade({"S1": 0.5}, {"S1": 0.0})
    verdict = await guard.check(request("x", policies=POLICIES[:1]))
    assert verdict.decided_by == "rsafe" and verdict.violated == []


async def test_missing_first_result_escalates_and_none_score_does_not() -> None:
    guard, _, second = _cascade({"S2": None}, {"S1": 1.0})
    verdict = await guard.check(request("x", policies=POLICIES[:2]))
    assert second.seen == [("S1",)]
    assert verdict.violated == ["S1"]


async def test_second_failure_fails_closed_or_falls_back() -> None:
    first = ScriptedGuard("embedded", {"S1": 0.6, "S2": 0.0})
    second = ScriptedGuard("rsafe", {}, fail=RuntimeError("server down"))
    guard = CascadeGuard(first, second, parse_options({}))
    with pytest.raises(GuardFailure, match="server down"):
        await guard.check(request("x", policies=POLICIES[:2]))
    guard = CascadeGuard(first, second, parse_options({"on_second_failure": "first"}))
    verdict = await guard.check(request("x", policies=POLICIES[:2]))
    assert verdict.violated == ["S1"] and verdict.decided_by == "embedded"


async def test_first_failure_cancels_forced_second_check() -> None:
    first = ScriptedGuard("embedded", {}, fail=GuardFailure("encoder crashed"))
    second = ScriptedGuard("rsafe", {"S9": 0.0}, delay=5)
    guard = CascadeGuard(first, second, parse_options({}))
    with pytest.raises(GuardFailure, match="encoder crashed"):
        await asyncio.wait_for(guard.check(request("x")), 1)


def test_options_and_registry() -> None:
    with pytest.raises(GuardConfigError, match="band"):
        parse_options({"band": [0.9, 0.1]})
    with pytest.raises(GuardConfigError):
        parse_options({"nope": 1})
    with pytest.raises(GuardConfigError, match="another cascade"):
        build_guard("cascade", {"first": "cascade"}, policy_set())
    guard = build_guard(
        "cascade", {"first": "patterns", "second": "rsafe", "second_options": {"url": "http://g:8000"}}, policy_set()
    )
    assert guard.first.name == "patterns" and guard.second.name == "rsafe"
    # --guard-url / --guard-model land on the cascade's options: they mean the reasoning guard
    guard = build_guard("cascade", {"first": "patterns", "url": "http://cli:1", "model": "m"}, policy_set())
    assert guard.second.engine.urls == ["http://cli:1/v1"] and guard.second.engine.model == "m"


async def test_closes_both() -> None:
    guard, first, second = _cascade({})
    await guard.aclose()
    assert first.closed and second.closed
