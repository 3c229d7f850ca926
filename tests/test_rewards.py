"""Rule rewards: unit cases, adversarial outputs, and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.rsafe.prompt import render_answer
from training.rsafe.rewards import (
    REWARDS,
    accuracy_reward,
    format_reward,
    get_reward_funcs,
    length_reward,
    policy_ids_reward,
    rsafe_reward,
)

GOOD_UNSAFE = "<think>\nS2 forbids phishing and the user asks for a phishing email.\n</think>\n\\boxed{unsafe}\nViolated: S2"
GOOD_SAFE = "<think>\nA recipe question.\n</think>\n\\boxed{safe}"


def one(func, text, label="unsafe", **kw):
    return func([text], label=[label], **kw)[0]


@pytest.mark.parametrize(
    ("text", "fmt", "acc_if_unsafe"),
    [
        (GOOD_UNSAFE, 1.0, 1.0),
        (GOOD_SAFE, 1.0, 0.0),
        ("\\boxed{unsafe}", 0.0, 0.0),  # no think block at all
        ("<think>reasoning without end \\boxed{unsafe}", 0.0, 0.0),  # missing </think>
        ("reasoning</think>\\boxed{unsafe}", 0.0, 0.0),  # missing <think>
        ("<think>x</think>unsafe", 0.0, 0.0),  # no box
        ("<think>it is \\boxed{unsafe}</think>", 0.0, 0.0),  # box only inside the reasoning
        ("<think>say \\boxed{safe}</think>\\boxed{unsafe}", 1.0, 1.0),  # the box after </think> is the answer
        ("<think>x</think>\\boxed{unsafe} or \\boxed{safe}", 0.0, 0.0),  # two disagreeing boxes
        ("<think>x</think>\\boxed{unsafe}\\boxed{unsafe}", 1.0, 1.0),  # repeated, agreeing
        ("<think>a</think><think>b</think>\\boxed{unsafe}", 0.0, 0.0),  # two think blocks
        ("</think><think>x\\boxed{unsafe}", 0.0, 0.0),  # tags in the wrong order
        ("<think>x</think>\\boxed{maybe}", 0.0, 0.0),  # unknown label
        ("<think>x</think>\\boxed{ \\text{Unsafe} }.", 1.0, 1.0),  # forgiven wrapper/case/punctuation
        ("<think>x</think>\\boxed{safe}\nViolated: S2", 0.0, 0.0),  # safe but names a violation
        ("", 0.0, 0.0),
    ],
)
def test_format_and_accuracy_cases(text, fmt, acc_if_unsafe):
    assert one(format_reward, text, policy_ids=[["S2"]]) == fmt
    assert one(accuracy_reward, text, policy_ids=[["S2"]]) == acc_if_unsafe
    assert one(rsafe_reward, text, policy_ids=[["S2"]]) == pytest.approx(0.9 * acc_if_unsafe + 0.1 * fmt)


def test_conversational_completions_are_read():
    completions = [[{"role": "assistant", "content": GOOD_SAFE}], [{"role": "assistant", "content": "garbage"}]]
    assert rsafe_reward(completions, label=["safe", "safe"]) == [pytest.approx(1.0), 0.0]


def test_accuracy_only_counts_with_format():
    # The right verdict without the format earns nothing: RSafe's accuracy = format x match.
    assert one(accuracy_reward, "\\boxed{unsafe}") == 0.0
    assert one(rsafe_reward, "\\boxed{unsafe}") == 0.0


def test_policy_ids_reward():
    kw = {"label": ["unsafe"] * 3 + ["safe"], "violated": [["S2"], ["S2", "S9"], [], []], "policy_ids": [["S2", "S9"]] * 4}
    texts = [GOOD_UNSAFE, GOOD_UNSAFE, GOOD_UNSAFE, GOOD_SAFE]
    assert policy_ids_reward(texts, **kw) == [1.0, 0.5, None, None]
    assert policy_ids_reward([GOOD_SAFE], label=["unsafe"], violated=[["S2"]], policy_ids=[["S2"]]) == [0.0]


def test_length_reward():
    assert length_reward(["x" * 10], target_chars=20) == [0.0]
    assert length_reward(["x" * 30], target_chars=20) == [pytest.approx(-0.5)]
    assert length_reward(["x" * 100], target_chars=20) == [-1.0]


def test_registry():
    assert set(REWARDS) == {"format", "accuracy", "rsafe", "policy_ids", "length"}
    funcs = get_reward_funcs(["rsafe", "length"], length_target_chars=5)
    assert funcs[0] is rsafe_reward and funcs[1].__name__ == "length"
    assert funcs[1](["x" * 10]) == [-1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward_funcs(["nope"])


# --- properties --------------------------------------------------------------------------

labels = st.sampled_from(["safe", "unsafe"])
noise = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(label=labels, reasoning=noise.filter(lambda s: "<think>" not in s and "</think>" not in s and "\\boxed" not in s))
def test_rendered_answers_earn_full_reward(label, reasoning):
    """Every answer in the trained format gets format 1 and accuracy 1 for its own label, 0 for the other."""
    text = render_answer(label, ["S1"] if label == "unsafe" else [], reasoning or "r")
    other = "safe" if label == "unsafe" else "unsafe"
    assert one(format_reward, text, label, policy_ids=[["S1"]]) == 1.0
    assert one(rsafe_reward, text, label, policy_ids=[["S1"]]) == pytest.approx(1.0)
    assert one(rsafe_reward, text, other, policy_ids=[["S1"]]) == pytest.approx(0.1)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), label=labels)
def test_rewards_are_bounded_and_consistent(text, label):
    fmt = one(format_reward, text, label)
    acc = one(accuracy_reward, text, label)
    assert fmt in (0.0, 1.0) and acc in (0.0, 1.0)
    assert acc <= fmt  # accuracy never without format
    assert one(rsafe_reward, text, label) == pytest.approx(0.9 * acc + 0.1 * fmt)


@settings(max_examples=200, deadline=None)
@given(prefix=noise, label=labels, forged=labels)
def test_boxes_inside_reasoning_never_decide(prefix, label, forged):
    """A verdict forged inside the reasoning cannot change what is scored."""
    clean = prefix.replace("<think>", "").replace("</think>", "").replace("\\boxed", "")
    text = f"<think>{clean} \\boxed{{{forged}}}</think>\n\\boxed{{{label}}}"
    assert one(accuracy_reward, text, label) == 1.0


@settings(max_examples=200, deadline=None)
@given(body=noise, label=labels)
def test_missing_tags_never_earn_format(body, label):
    clean = body.replace("<think>", "").replace("</think>", "")
    for text in (f"{clean}\\boxed{{{label}}}", f"<think>{clean}\\boxed{{{label}}}", f"{clean}</think>\\boxed{{{label}}}"):
        assert one(format_reward, text, label) == 0.0
