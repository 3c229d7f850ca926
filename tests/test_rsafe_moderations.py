"""The /v1/moderations response builder: OpenAI's shape keyed by policy id, failure modes honoured."""

from __future__ import annotations

from gateway.moderations import to_openai_moderation
from guard.policies import Policy
from guard.verdict import PolicyResult, Verdict

POLS = (
    Policy(id="S1", name="Violent crimes", description="violence"),
    Policy(id="S2", description="crime"),
    Policy(id="SOFT", description="soft", failure_mode="open"),
)


def by_policy(keys: dict) -> dict:
    """The policy-id keys (each result also carries OpenAI's 13 category keys)."""
    return {k: v for k, v in keys.items() if k in {p.id for p in POLS}}


def test_shape_and_values() -> None:
    verdict = Verdict(
        "rsafe",
        {"S1": PolicyResult("S1", True, None), "S2": PolicyResult("S2", False, 0.125), "SOFT": PolicyResult("SOFT", False)},
        reasoning="asks for violence",
        decided_by="embedded+rsafe",
    )
    body = to_openai_moderation(verdict, POLS, model="guard-7b", request_id="modr-1")
    assert body["id"] == "modr-1" and body["model"] == "guard-7b"
    (res,) = body["results"]
    assert res["flagged"] is True
    assert by_policy(res["categories"]) == {"S1": True, "S2": False, "SOFT": False}
    assert by_policy(res["category_scores"]) == {"S1": 1.0, "S2": 0.125, "SOFT": 0.0}
    assert res["reasoning"] == "asks for violence" and res["decided_by"] == "embedded+rsafe"
    assert res["policy_names"]["S1"] == "Violent crimes" and res["policy_names"]["S2"] == "S2"
    assert "error" not in res


def test_failed_check_applies_failure_modes() -> None:
    body = to_openai_moderation([None, Verdict("rsafe", {})], POLS, errors=["guard timed out", None])
    failed, partial = body["results"]
    assert failed["flagged"] and failed["error"] == "guard timed out"
    assert by_policy(failed["categories"]) == {"S1": True, "S2": True, "SOFT": False}
    # a verdict that judged nothing: closed policies flagged, open ones not
    assert by_policy(partial["categories"]) == {"S1": True, "S2": True, "SOFT": False}
    assert body["id"].startswith("modr-")


def test_clean_verdict_not_flagged() -> None:
    verdict = Verdict("embedded", {p.id: PolicyResult(p.id, False, 0.01) for p in POLS})
    (res,) = to_openai_moderation(verdict, POLS)["results"]
    assert res["flagged"] is False and res["reasoning"] is None
