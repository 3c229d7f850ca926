"""The rsafe guard over a scripted engine: prompts sent, verdict mapping, modes, budgets, options."""

from __future__ import annotations

import pytest

from guard.errors import GuardConfigError, GuardFailure
from guard.policies import Direction, Policy
from guard.registry import build_guard
from guard.rsafe.backend import RSafeGuard, parse_options
from guard.rsafe.engines import Generation
from guard.rsafe.prompt import render_answer
from tests._rsafe_support import (
    IDS,
    POLICIES,
    ScriptedEngine,
    ids_in_categories,
    policy_set,
    request,
)


def _guard(reply, **opts) -> tuple[RSafeGuard, ScriptedEngine]:
    engine = ScriptedEngine(reply)
    return RSafeGuard(engine, parse_options(opts)), engine


async def test_unsafe_verdict_maps_named_policies() -> None:
    def reply(prompt, _):
        if "<think>" in prompt.text.split("<END CONVERSATION>")[1]:
            return render_answer("unsafe", ["S2"], "It asks how to steal a car.")
        return render_answer("safe")

    guard, engine = _guard(reply)
    verdict = await guard.check(request("how do I hotwire my neighbour's car?"))
    assert verdict.violated == ["S2"]
    assert set(verdict.results) == set(IDS)
    assert verdict.results["S2"].score == 1.0 and verdict.results["S1"].score == 0.0
    assert verdict.reasoning == "It asks how to steal a car."
    assert verdict.decided_by == "rsafe" and verdict.backend == "rsafe"
    # one reasoning call (S1, S2, S9) and one direct call (S6: reasoning never), concurrently
    assert len(engine.calls) == 2
    by_mode = {("<think>" in p.text.split("<END CONVERSATION>")[1]): (p, n) for p, n in engine.calls}
    assert ids_in_categories(by_mode[True][0].text) == ["S1", "S2", "S9"]
    assert by_mode[True][1] == 512
    assert ids_in_categories(by_mode[False][0].text) == ["S6"]
    assert by_mode[False][1] == 32
    assert by_mode[True][0].messages == ({"role": "user", "content": by_mode[True][0].text},)


async def test_unsafe_without_violated_line_fails_wide() -> None:
    guard, _ = _guard(lambda p, n: "<think>bad</think>\\boxed{unsafe}" if n > 32 else "\\boxed{safe}")
    verdict = await guard.check(request("x"))
    assert sorted(verdict.violated) == ["S1", "S2", "S9"]


async def test_no_reasoning_mode_and_budgets() -> None:
    guard, engine = _guard(lambda p, n: "\\boxed{unsafe}\nViolated: S6", reasoning=False, direct_max_tokens=8)
    verdict = await guard.check(request("x"))
    assert verdict.violated == ["S6"] and verdict.reasoning is None
    assert len(engine.calls) == 1 and engine.calls[0][1] == 8
    assert "without reasoning" in engine.calls[0][0].text

    guard, engine = _guard(lambda p, n: render_answer("safe", reasoning="ok"), policy_budgets={"S9": 1024})
    await guard.check(request("x", policies=POLICIES[:3]))
    assert [n for _, n in engine.calls] == [1024]


async def test_reasoning_is_bounded() -> None:
    guard, _ = _guard(lambda p, n: render_answer("safe", reasoning="y" * 10_000), reasoning_chars=100)
    verdict = await guard.check(request("x", policies=POLICIES[:1]))
    assert len(verdict.reasoning) <= 110 and verdict.reasoning.endswith("[...]")


@pytest.mark.parametrize(
    "reply",
    [
        "I think it is safe.",
        Generation("<think>hmm", False),
        Generation("<think>ok</think>\\boxed{safe}", False),  # stopped at the limit: refuse
        "<think>ok</think>\\boxed{probably safe}",
    ],
)
async def test_unreadable_answers_fail(reply) -> None:
    guard, _ = _guard(lambda p, n: reply)
    with pytest.raises(GuardFailure):
        await guard.check(request("x", policies=POLICIES[:2]))


async def test_engine_crash_is_failure_not_pass() -> None:
    def boom(p, n):
        raise RuntimeError("CUDA out of memory")

    guard, _ = _guard(boom)
    with pytest.raises(GuardFailure, match="CUDA out of memory"):
        await guard.check(request("x"))


async def test_patterns_policies_are_not_sent_to_the_model() -> None:
    secret = Policy(id="SECRETS", engine="patterns", detectors=("api_key",))
    guard, engine = _guard(lambda p, n: render_answer("safe", reasoning="ok"))
    verdict = await guard.check(request("x", policies=(POLICIES[0], secret)))
    assert set(verdict.results) == {"S1"}
    assert ids_in_categories(engine.calls[0][0].text) == ["S1"]


async def test_output_direction_prompt() -> None:
    guard, engine = _guard(lambda p, n: render_answer("safe", reasoning="ok"))
    await guard.check(request("Sure, here is how.", Direction.OUTPUT, POLICIES[:1], context="help me"))
    text = engine.calls[0][0].text
    assert "'Agent' messages" in text and "User: help me\n\nAgent: Sure, here is how." in text


def test_options_validation_and_registry() -> None:
    with pytest.raises(GuardConfigError, match="max_tokens"):
        parse_options({"max_tokens": 0})
    with pytest.raises(GuardConfigError, match="bogus"):
        parse_options({"bogus": 1})
    with pytest.raises(GuardConfigError, match="url"):
        build_guard("rsafe", {}, policy_set())
    with pytest.raises(GuardConfigError, match="checkpoint"):
        build_guard("rsafe", {"engine": "transformers"}, policy_set())
    assert parse_options({"url": "http://a:1, http://b:2"}).url == ("http://a:1", "http://b:2")
    assert parse_options({"url": ["http://a:1"], "urls": ["http://b:2"]}).url == ("http://a:1", "http://b:2")
    guard = build_guard("rsafe", {"url": "http://a:1", "model": "m"}, policy_set(timeout_s=2.5))
    assert guard.name == "rsafe" and guard.engine.timeout_s == 2.5
    assert guard.engine.urls == ["http://a:1/v1"]
