"""Rule-based rewards for GRPO, registered by name (open-r1 style).

Every reward is a small pure function with TRL's reward signature:
`f(completions, **columns) -> list[float | None]`, one value per completion.
`completions` are strings (standard datasets) or `[{"role": "assistant",
"content": ...}]` lists (conversational datasets); the dataset's extra columns
(`label`, `violated`, `policy_ids`) arrive as keyword lists. `None` means "not
applicable to this sample" (TRL then leaves this reward out for it).

The answer is read by the guard engine's own parser (`guard.rsafe.parse`), so
training rewards exactly what serving accepts:

- `format`: 1 when the output is well formed, else 0. RSafe's condition is the
  regex `<think>.*</think>.*\\boxed{.*}`; we also require that the serving parser
  reads a verdict from it (exactly one think block, a `safe`/`unsafe` box after
  it, no disagreeing boxes, no "safe" that names violated ids). An output the
  gateway would reject as unreadable must not earn the format reward.
- `accuracy`: 1 when the format holds and the verdict equals the label.
- `rsafe`: 0.9 * accuracy + 0.1 * format, RSafe's combined reward.
- `policy_ids`: for unsafe samples whose gold categories are known, the Jaccard
  overlap of the ids the model names with the gold ids (0 if unreadable or
  answered safe); None elsewhere.
- `length`: 0 up to `target_chars`, then falling linearly to -1 at twice that:
  a brake on rambling, off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from guard.errors import GuardFailure
from guard.rsafe.parse import ParsedOutput, format_ok, parse_output

RewardFunc = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """The generated text of a standard (str) or conversational (messages) completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def read_answer(text: str, policy_ids: Sequence[str] = ()) -> ParsedOutput | None:
    """The parsed answer when it satisfies RSafe's format and the serving parser, else None."""
    if not format_ok(text):
        return None
    try:
        return parse_output(text, policy_ids=tuple(policy_ids), require_think=True)
    except GuardFailure:
        return None


def _ids(kwargs: dict[str, Any], n: int) -> list[Sequence[str]]:
    return list(kwargs.get("policy_ids") or [()] * n)


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    ids = _ids(kwargs, len(completions))
    return [float(read_answer(completion_text(c), p) is not None) for c, p in zip(completions, ids)]


def accuracy_reward(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float | None]:
    ids = _ids(kwargs, len(completions))
    out: list[float | None] = []
    for c, gold, p in zip(completions, label, ids):
        parsed = read_answer(completion_text(c), p)
        out.append(float(parsed is not None and parsed.label == gold))
    return out


def rsafe_reward(completions: Sequence[Any], label: Sequence[str], **kwargs: Any) -> list[float | None]:
    fmt = format_reward(completions, **kwargs)
    acc = accuracy_reward(completions, label, **kwargs)
    return [0.9 * a + 0.1 * f for a, f in zip(acc, fmt)]


def policy_ids_reward(
    completions: Sequence[Any], label: Sequence[str], violated: Sequence[Sequence[str]] | None = None, **kwargs: Any
) -> list[float | None]:
    ids = _ids(kwargs, len(completions))
    violated = violated or [()] * len(completions)
    out: list[float | None] = []
    for c, gold_label, gold, p in zip(completions, label, violated, ids):
        if gold_label != "unsafe" or not gold:
            out.append(None)
            continue
        parsed = read_answer(completion_text(c), p)
        if parsed is None or parsed.label != "unsafe":
            out.append(0.0)
            continue
        named, want = set(parsed.violated), set(gold)
        out.append(len(named & want) / len(named | want))
    return out


def length_reward(completions: Sequence[Any], target_chars: int = 1024, **kwargs: Any) -> list[float | None]:
    out: list[float | None] = []
    for c in completions:
        over = len(completion_text(c)) - target_chars
        out.append(-min(1.0, max(0, over) / target_chars))
    return out


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "rsafe": rsafe_reward,
    "policy_ids": policy_ids_reward,
    "length": length_reward,
}


def get_reward_funcs(names: Sequence[str], **params: Any) -> list[RewardFunc]:
    """Reward functions by name; `length_target_chars` configures `length`.

    Each returned callable keeps a `__name__` (TRL logs rewards under it).
    """
    funcs: list[RewardFunc] = []
    for name in names:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
        func = REWARDS[name]
        if name == "length" and "length_target_chars" in params:
            bound = partial(func, target_chars=int(params["length_target_chars"]))
            bound.__name__ = "length"  # type: ignore[attr-defined]
            func = bound
        funcs.append(func)
    return funcs
