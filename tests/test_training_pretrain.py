"""The demo's base-model stand-in: the reading game's texts, its training loop, and frozen embedding rows."""

from __future__ import annotations

import random
import re

import pytest

from training.demo import synthetic
from training.demo.pretrain import PretrainConfig, game_texts, matching_game, pretrain

torch = pytest.importorskip("torch")


def test_matching_game_answers_say_which_names_occur_in_the_sentence():
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        question, answer = matching_game(rng, synthetic.THINGS)
        head, sentence = question.rstrip("\n").split("\n\n")
        names = [re.search(r"(\w+)\.$", line).group(1) for line in head.splitlines()]
        lines = answer.splitlines()
        assert len(lines) == len(names)
        for name, line in zip(names, lines):
            said = "present" if re.search(rf"\bthe {name}\b", sentence) else "absent"
            assert line == f"- {name} {said}."
            seen.add(said)
        # No word of the guard task: the base model learns to read, not the guard's labels or format.
        assert not re.search(r"safe|boxed|<think>|\bS\d", question + answer)
    assert seen == {"present", "absent"}


def test_game_texts_are_seeded_and_cover_held_out_things():
    assert game_texts(50, seed=1) == game_texts(50, seed=1) != game_texts(50, seed=2)
    _, heldout = synthetic.split_things()
    text = " ".join(game_texts(2000, seed=0))
    assert all(f" {t}" in text for t in heldout)


@pytest.fixture(scope="module")
def tiny_model():
    from training.demo.tiny import build_tiny

    torch.set_num_threads(1)
    return build_tiny(game_texts(300, seed=0), None, seed=0, vocab_size=500, hidden=32, layers=1, heads=1)


def test_pretrain_runs_to_its_step_budget_and_reports_game_accuracy(tiny_model):
    model, tok = tiny_model
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    lines = []
    stats = pretrain(model, tok, PretrainConfig(max_steps=4, batch=8, eval_every=2), log=lines.append)
    assert stats["steps"] == 4 and 0.0 <= stats["game_accuracy"] <= 1.0
    assert len(lines) == 2 and "held-out game decisions" in lines[-1]
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight)


def test_freeze_rows_keeps_those_rows_and_trains_the_rest(tiny_model):
    from training.demo.tiny import freeze_rows

    model, tok = tiny_model
    frozen = tok(" zebra tiger present absent", add_special_tokens=False)["input_ids"]
    freeze_rows(model, frozen)
    weight = model.get_input_embeddings().weight
    before = weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"][:40] for text in game_texts(4, seed=9)][:1])
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = (weight.detach() != before).any(dim=1)
    assert not changed[frozen].any()
    used = sorted(set(ids[0].tolist()) - set(frozen))
    assert changed[used].all()
