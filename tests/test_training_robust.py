"""The pieces that keep the CPU demo's result off a knife-edge (issue 18): the decision-weighted SFT loss
and the GRPO rollout monitor that catches a collapse to one verdict."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from training.demo.synthetic import make_split  # noqa: E402
from training.demo.tiny import train_tokenizer  # noqa: E402
from training.rsafe.grpo_monitor import RolloutMonitor  # noqa: E402
from training.rsafe.sft import balanced_weights, weighted_loss  # noqa: E402

SAFE = "<think>\nS1: lemon absent.\n</think>\n\\boxed{safe}"
UNSAFE = "<think>\nS1: lemon present.\n</think>\n\\boxed{unsafe}\nViolated: S1"


@pytest.fixture(scope="module")
def tok_rows():
    examples = make_split(60, seed=0)
    tok = train_tokenizer([t for e in examples for t in (e.prompt, e.target())], vocab_size=1000)
    rows = [{"completion": [{"role": "assistant", "content": e.target()}]} for e in examples]
    return tok, rows, examples


def test_balanced_weights_make_each_decision_word_weigh_the_same_in_total(tok_rows):
    tok, rows, examples = tok_rows
    weights = balanced_weights(tok, rows, ["Ġpresent", "Ġabsent"], 5.0)
    present, absent = tok.convert_tokens_to_ids(["Ġpresent", "Ġabsent"])
    n_p = sum(e.reasoning.count(" present.") for e in examples)
    n_a = sum(e.reasoning.count(" absent.") for e in examples)
    assert n_a > n_p > 0  # "absent" is the majority answer in the task
    assert weights[present] * n_p == pytest.approx(weights[absent] * n_a)  # class-balanced
    assert (weights[present] * n_p + weights[absent] * n_a) / (n_p + n_a) == pytest.approx(5.0)  # mean weight


def test_balanced_weights_refuse_a_word_that_is_not_one_token(tok_rows):
    tok, rows, _ = tok_rows
    with pytest.raises(ValueError, match="one token"):
        balanced_weights(tok, rows, ["Ġpresent", "Ġnot-a-token-here"], 5.0)


def test_weighted_loss_is_cross_entropy_when_unweighted_and_moves_towards_weighted_tokens():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=gen)
    labels = torch.tensor([[-100, 3, 4, 5, 7, -100], [-100, -100, 2, 3, 3, 9]])
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert weighted_loss(logits, labels, {}) == pytest.approx(plain.item(), rel=1e-6)
    # With all weight on token 3 the loss is the mean cross-entropy at the positions whose label is 3.
    at3 = labels[:, 1:] == 3
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].clamp(min=0).reshape(-1), reduction="none")
    heavy = weighted_loss(logits, labels, {3: 1e6})
    assert heavy == pytest.approx(ce[at3.reshape(-1)].mean().item(), rel=1e-4)
    assert heavy != pytest.approx(plain.item(), rel=1e-3)


def test_monitor_records_verdict_shares_and_group_spread_and_flags_a_collapse():
    from training.rsafe.rewards import rsafe_reward

    monitor = RolloutMonitor(num_generations=4)
    reward = monitor.wrap(rsafe_reward)
    assert reward.__name__ == "rsafe_reward"  # TRL logs rewards under the function's name
    # two prompts x 4 rollouts: the first group disagrees, the second is one constant answer
    completions = [SAFE, UNSAFE, UNSAFE, "garbage"] + [SAFE] * 4
    labels = ["unsafe"] * 4 + ["safe"] * 4
    values = reward(completions, label=labels, policy_ids=[["S1"]] * 8)
    assert values == rsafe_reward(completions, label=labels, policy_ids=[["S1"]] * 8)  # the reward is unchanged
    step = monitor.steps[-1]
    assert step["share_safe"] == 5 / 8 and step["share_unsafe"] == 2 / 8 and step["share_unreadable"] == 1 / 8
    assert step["flat_groups"] == 0.5  # the all-safe group carries no learning signal
    assert step["group_reward_std"] > 0.2
    assert not monitor.collapsed()
    for _ in range(60):  # then every rollout says safe
        reward([SAFE] * 8, label=labels, policy_ids=[["S1"]] * 8)
    assert monitor.collapsed()
    windows = monitor.summary(windows=2)
    assert [w["steps"] for w in windows] == ["1-31", "32-61"] and windows[-1]["share_safe"] == 1.0
