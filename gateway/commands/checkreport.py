"""What `rsafe check` prints, computed the same way locally and by a running gateway.

`rsafe check TEXT` builds a guard in its own process (torch, the encoder, the policy
embeddings: seconds). `rsafe check --url URL TEXT` asks a gateway that already runs:
`POST /v1/moderations` with the OpenAI body plus one extension field,

    {"input": "...", "rsafe_check": {"direction": "input" | "output", "context": "..."}}

and the gateway answers the OpenAI shape (`results`, consistent with the direction asked)
plus `rsafe_check`: one report per input, the very dict the local check prints (the
gateway's pipeline and policies in force, not the local file's).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.pipeline import Decision
from guard.policies import Direction, PolicySet
from guard.verdict import PolicyResult, Turn, Verdict

FIELD = "rsafe_check"


def check_turns(direction: Direction, text: str, context: str) -> tuple[Turn, ...]:
    """The conversation a one-text check judges: the text, after its user turn for output."""
    if direction is Direction.OUTPUT:
        return ((Turn("user", context),) if context else ()) + (Turn("assistant", text),)
    return (Turn("user", text),)


def report(d: Decision, policy_version: str) -> dict[str, Any]:
    """The decision as `rsafe check` prints it (exit 3 when `decision` is `block`)."""
    return {
        "decision": d.action,
        "direction": d.direction.value,
        "policies": [
            {"policy": o.policy_id, "action": o.action, "reason": o.reason, "score": o.score} for o in d.outcomes
        ],
        "checked": d.checked,
        "rewritten": d.rewrites.get(0),
        "message": d.message() or None,
        "guard": d.backend or None,
        "decided_by": d.decided_by,
        "reasoning": d.reasoning,
        "error": d.error,
        "latency_ms": round(d.latency_ms, 3),
        "policy_version": policy_version,
    }


def check_options(body: dict[str, Any]) -> tuple[Direction, str] | None:
    """The `rsafe_check` extension of a moderations body: (direction, context), or None."""
    raw = body.get(FIELD)
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"direction", "context"}:
        raise BadRequest(f"'{FIELD}' must be an object with 'direction' and 'context'", param=FIELD)
    direction, context = raw.get("direction", "input"), raw.get("context", "")
    if direction not in ("input", "output"):
        raise BadRequest(f"'{FIELD}.direction' must be 'input' or 'output'", param=f"{FIELD}.direction")
    if not isinstance(context, str):
        raise BadRequest(f"'{FIELD}.context' must be a string", param=f"{FIELD}.context")
    return Direction(direction), context


def as_verdict(d: Decision) -> Verdict:
    """The decision as a verdict over the policies it checked (for the OpenAI `results`):
    a policy with an outcome other than fail-open counts as violated."""
    outcomes = {o.policy_id: o for o in d.outcomes}
    results = {}
    for pid in d.checked:
        o = outcomes.get(pid)
        violated = o is not None and o.action != "fail_open"
        score = o.score if o is not None and o.score is not None else (1.0 if violated else 0.0)
        results[pid] = PolicyResult(pid, violated, score)
    return Verdict(backend=d.backend or "patterns", decided_by=d.decided_by, results=results, reasoning=d.reasoning)


async def remote_check(gateway: Any, ctx: Any, body: dict[str, Any], texts: list[str]) -> dict[str, Any] | None:
    """`/v1/moderations` with `rsafe_check`: each input checked by the gateway's pipeline in the
    direction asked; None when the body has no such field (a plain moderations call)."""
    options = check_options(body)
    if options is None:
        return None
    from gateway.moderations import to_openai_moderation

    direction, context = options
    policies: PolicySet = gateway.policies
    decisions = [
        await gateway.moderator.check(policies, direction, check_turns(direction, t, context), [t],
                                      model=ctx.model, key_id=ctx.key_id)
        for t in texts
    ]
    active = policies.active(direction, ctx.model, ctx.key_id)
    out = to_openai_moderation(
        [as_verdict(d) for d in decisions], active, model=ctx.model or "rsafe-" + (gateway.moderator.guard_name or "patterns"),
        errors=[d.error for d in decisions], request_id="modr-" + ctx.request_id.removeprefix("req_"),
    )
    out[FIELD] = [report(d, policies.version) for d in decisions]
    return out
