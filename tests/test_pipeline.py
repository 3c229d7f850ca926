"""The decision logic: actions, precedence and every failure mode."""

from __future__ import annotations

import pytest

from gateway.pipeline import Moderator
from guard.policies import Direction, PolicySet
from guard.verdict import Turn
from tests.conftest import TEST_POLICIES
from tests.fakes.guard import ScriptedGuard


@pytest.fixture
def ps() -> PolicySet:
    return PolicySet.from_yaml(TEST_POLICIES)


async def run(ps, text, direction=Direction.INPUT, guard=None, timeout=0.5):
    moderator = Moderator(guard or ScriptedGuard(), timeout)
    role = "user" if direction is Direction.INPUT else "assistant"
    return await moderator.check(ps, direction, (Turn(role, text),), [text])


async def test_clean_text_is_allowed(ps):
    d = await run(ps, "hello there")
    assert d.action == "allow" and d.outcomes == [] and not d.notable
    assert set(d.checked) == {"VIOLENCE", "FLAGME", "SECRETS", "BANNED"}


async def test_block_names_policy_and_message(ps):
    d = await run(ps, "VIOLATE:VIOLENCE please")
    assert d.blocked and d.blocking.id == "VIOLENCE" and d.message() == "Blocked by VIOLENCE."


async def test_flag_is_logged_but_passes(ps):
    d = await run(ps, "VIOLATE:FLAGME")
    assert d.action == "flag" and d.notable and d.rewrites == {}


async def test_precedence_block_over_rewrite_and_flag(ps):
    d = await run(ps, "VIOLATE:FLAGME VIOLATE:VIOLENCE mail a@b.io", Direction.INPUT)
    assert d.action == "block"
    assert {o.policy_id for o in d.outcomes} == {"FLAGME", "VIOLENCE", "SECRETS"}


async def test_redact_rewrites_in_place(ps):
    d = await run(ps, "write to a@b.io today")
    assert d.action == "rewrite" and d.rewrites == {0: "write to [REDACTED:email] today"}


async def test_replace_rewrite_on_output(ps):
    d = await run(ps, "VIOLATE:REPLACE", Direction.OUTPUT)
    assert d.action == "rewrite" and d.rewrites == {0: "[removed by policy]"}


async def test_patterns_keyword_block(ps):
    d = await run(ps, "this has the forbidden-word in it")
    assert d.blocked and d.blocking.id == "BANNED"


@pytest.mark.parametrize("trigger", ["GUARD_CRASH", "GUARD_SLOW", "GUARD_PARTIAL"])
async def test_guard_failure_fails_closed_by_default(ps, trigger):
    d = await run(ps, f"innocent {trigger}", timeout=0.2)
    assert d.blocked, "a failed guard must never count as a pass"
    assert d.error
    assert {o.reason for o in d.outcomes} == {"guard_error"}


async def test_guard_failure_fail_open_policy_is_recorded_not_passed(ps):
    d = await run(ps, "GUARD_CRASH", Direction.OUTPUT)
    # SOFT is fail-open, the others closed: the reply is still blocked, and SOFT is a fail-open.
    assert d.blocked
    assert d.fail_open == ["SOFT"]
    assert [o.action for o in d.outcomes if o.policy_id == "SOFT"] == ["fail_open"]


async def test_only_fail_open_policies_pass_with_a_record():
    ps = PolicySet.from_yaml("policies:\n  - {id: A, description: a, failure_mode: open}\n")
    d = await run(ps, "GUARD_CRASH")
    assert d.action == "allow" and d.fail_open == ["A"] and d.notable and d.error


async def test_guard_returning_wrong_type_fails_closed(ps):
    class Broken(ScriptedGuard):
        async def check(self, request):
            return {"safe": True}

    d = await run(ps, "hello", guard=Broken())
    assert d.blocked and "not a Verdict" in d.error


async def test_model_guard_only_sees_model_policies(ps):
    guard = ScriptedGuard()
    await run(ps, "hi", guard=guard)
    assert {p.id for p in guard.calls[0].policies} == {"VIOLENCE", "FLAGME"}
