"""OpenAI `/v1/moderations` response shape from a guard verdict (pure functions).

OpenAI's shape keys `categories` (bool) and `category_scores` (float) by
category name. Here every result carries two sets of keys: the user's policy ids (so a
client reads our policies), and OpenAI's 13 categories, filled from the policies that
declare them (`openai_categories`): a category is flagged when any policy mapped to it is,
and its score is the highest of theirs; a category no policy maps to is `false` / 0.0. So
openai-python's typed `result.categories.violence` works. A policy id that is also an OpenAI
category name (`violence`) shares its key: flagged if either is. Extra fields, ignored by
OpenAI SDKs (their models allow extra keys): `reasoning` (the guard's reasoning,
bounded by the guard), `decided_by`, `policy_names`, and `error` when the check
failed and the policies' failure modes decided.

A policy the guard did not judge, or a failed check, is flagged when its
failure mode is `closed` (the default): unreadable never means allowed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, get_args

from guard.policies import FailureMode, OpenAICategory, Policy
from guard.verdict import Verdict

OPENAI_CATEGORIES: tuple[str, ...] = get_args(OpenAICategory)


def _score(violated: bool, score: float | None) -> float:
    return float(score) if score is not None else (1.0 if violated else 0.0)


def moderation_result(verdict: Verdict | None, policies: Sequence[Policy], *, error: str | None = None) -> dict[str, Any]:
    """One `results[]` entry for one input text."""
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    for policy in policies:
        result = verdict.results.get(policy.id) if verdict is not None else None
        if result is None:
            flagged = policy.failure_mode == FailureMode.CLOSED
            categories[policy.id] = flagged
            scores[policy.id] = 1.0 if flagged else 0.0
        else:
            categories[policy.id] = result.violated
            scores[policy.id] = round(_score(result.violated, result.score), 6)
    for name in OPENAI_CATEGORIES:
        mapped = [p.id for p in policies if name in p.openai_categories]
        categories[name] = categories.get(name, False) or any(categories[pid] for pid in mapped)
        scores[name] = max([scores.get(name, 0.0), *(scores[pid] for pid in mapped)])
    entry: dict[str, Any] = {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {key: ["text"] for key in categories},
        "policy_names": {p.id: p.name or p.id for p in policies},
        "reasoning": verdict.reasoning if verdict is not None else None,
        "decided_by": (verdict.decided_by or verdict.backend) if verdict is not None else None,
    }
    if error is not None or verdict is None:
        entry["error"] = error or "guard check failed"
    return entry


def to_openai_moderation(
    verdicts: Verdict | None | Sequence[Verdict | None],
    policies: Sequence[Policy],
    *,
    model: str = "rsafe",
    errors: Sequence[str | None] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The whole response body: `{"id", "model", "results": [...]}`, one result per input."""
    items = list(verdicts) if isinstance(verdicts, (list, tuple)) else [verdicts]
    errs = list(errors) if errors is not None else [None] * len(items)
    if len(errs) != len(items):
        raise ValueError("errors must have one entry per verdict")
    return {
        "id": request_id or f"modr-{uuid.uuid4().hex[:24]}",
        "model": model,
        "results": [moderation_result(v, policies, error=e) for v, e in zip(items, errs, strict=True)],
    }
