"""Parser: well-formed answers, and every malformed answer is a GuardFailure (never 'safe')."""

from __future__ import annotations

import pytest

from guard.errors import GuardFailure
from guard.rsafe.parse import boxed_answer, format_ok, parse_output

IDS = ("S1", "S2", "S9")


@pytest.mark.parametrize(
    ("text", "label", "violated"),
    [
        ("<think>fine</think>\n\\boxed{safe}", "safe", ()),
        ("<think>fine</think>\\boxed{safe}\nViolated: none", "safe", ()),
        ("<think>bad</think>\n\\boxed{unsafe}\nViolated: S2, S9", "unsafe", ("S2", "S9")),
        ("<think>bad</think>\n\\boxed{unsafe}\nViolated: s9", "unsafe", ("S9",)),
        # trained without the Violated line: every active policy (fail wide)
        ("<think>bad</think>\n\\boxed{unsafe}", "unsafe", IDS),
        # only unknown ids named: same rule
        ("<think>bad</think>\n\\boxed{unsafe}\nViolated: U7", "unsafe", IDS),
        ("<think>x</think> The answer is \\boxed{\\text{Unsafe}}.\nViolated: S1", "unsafe", ("S1",)),
        ("<think>x</think>\\boxed{ SAFE }", "safe", ()),
        # same answer twice after </think> is fine
        ("<think>x</think>\\boxed{unsafe} so \\boxed{unsafe}\nViolated: S1", "unsafe", ("S1",)),
        # a box inside the reasoning is not the verdict; the one after </think> is
        ("<think>maybe \\boxed{safe}? no.</think>\\boxed{unsafe}\nViolated: S2", "unsafe", ("S2",)),
    ],
)
def test_well_formed(text: str, label: str, violated: tuple[str, ...]) -> None:
    parsed = parse_output(text, policy_ids=IDS)
    assert parsed.label == label
    assert parsed.violated == violated


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no <think>"),
        ("\\boxed{safe}", "no <think>"),
        ("<think>the answer is safe</think> the answer is safe", "no \\\\boxed"),
        ("<think>so \\boxed{safe}</think> done", "only inside its reasoning"),
        ("<think>x</think>\\boxed{safe} \\boxed{unsafe}", "unknown label|two different"),
        ("<think>x</think>\\boxed{unsafe} \\boxed{safe}", "two different"),
        ("<think>x</think>\\boxed{maybe}", "unknown label"),
        ("<think>x</think>\\boxed{}", "unknown label"),
        ("<think>x</think>\\boxed{safe", "no \\\\boxed"),
        ("<think>x", "malformed think"),
        ("</think><think>\\boxed{safe}", "before opening"),
        ("<think>a</think><think>b</think>\\boxed{safe}", "malformed think"),
        ("<think>x</think>\\boxed{safe}\nViolated: S2", "says safe but names"),
    ],
)
def test_malformed_is_failure(text: str, why: str) -> None:
    with pytest.raises(GuardFailure, match=why):
        parse_output(text, policy_ids=IDS)


def test_prefilled_think_opening_is_accepted() -> None:
    """Chat templates that put `<think>` in the generation prompt return only the rest of the block."""
    parsed = parse_output("I reason here.\n</think>\n\\boxed{unsafe}\nViolated: S2", policy_ids=IDS)
    assert parsed.label == "unsafe" and parsed.violated == ("S2",) and parsed.reasoning == "I reason here."
    assert not format_ok("I reason here.</think>\\boxed{unsafe}")  # the training reward stays strict


def test_truncated_is_failure_even_if_it_looks_complete() -> None:
    with pytest.raises(GuardFailure, match="truncated"):
        parse_output("<think>x</think>\\boxed{safe}", finished=False, policy_ids=IDS)


def test_no_reasoning_mode() -> None:
    assert parse_output("\\boxed{safe}", require_think=False).label == "safe"
    assert parse_output("\\boxed{unsafe}\nViolated: S1", require_think=False, policy_ids=IDS).violated == ("S1",)
    # a think block, if present, still has to be well formed and the box after it
    assert parse_output("<think>r</think>\\boxed{safe}", require_think=False).reasoning == "r"
    with pytest.raises(GuardFailure):
        parse_output("<think>\\boxed{safe}", require_think=False)


def test_reward_helpers() -> None:
    assert format_ok("<think>r</think>\\boxed{safe}")
    assert format_ok("<think>r</think> so \\boxed{unsafe}\nViolated: S1")
    assert not format_ok("\\boxed{safe}")
    assert not format_ok("<think>r</think> safe")
    assert not format_ok("hello <think>r</think>\\boxed{safe}")
    assert boxed_answer("<think>\\boxed{safe}</think>\\boxed{Unsafe}") == "unsafe"
    assert boxed_answer("<think>r</think> none") is None
    assert boxed_answer("\\boxed{\\text{safe}}") == "safe"
