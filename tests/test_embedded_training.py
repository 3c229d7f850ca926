"""Training smoke test: a few steps on the committed tiny sample; the head learns and loads."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from guard.embedded.head import PolicyHead, load
from guard.policies import Direction, PolicySet
from guard.registry import build_guard
from guard.verdict import CheckRequest, Turn
from training.embedded import main as train_main
from training.embedded_data import build_mix, policy_pool

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "embedded_train"


def test_mix_reads_the_sample_and_splits_every_file():
    mix = build_mix(SAMPLE, seed=0)
    sources = {it.source for it in mix.train}
    assert {"advbench.jsonl", "do_not_answer.jsonl", "mtbench_vicuna_benign.jsonl", "refusal_completions.jsonl"} <= sources
    assert {it.source for it in mix.val} >= {"advbench.jsonl", "mtbench_vicuna_benign.jsonl"}
    assert any(it.pair >= 0 for it in mix.train)  # HH pairs for the ranking loss
    assert all(it.context for it in mix.train if it.source == "refusal_completions.jsonl")
    assert build_mix(SAMPLE, seed=0).train == mix.train  # deterministic
    assert [it.text for it in build_mix(SAMPLE, seed=1).train] != [it.text for it in mix.train]


def test_policy_pool_has_several_wordings_per_default_policy():
    pool = policy_pool(PolicySet.load(ROOT / "policies.yaml"))
    s1 = [p for p in pool if p.group == "S1"]
    assert len({p.text for p in s1}) >= 3
    assert all(p.group != "SECRETS" for p in pool)  # patterns policies are not the model's business


@pytest.mark.slow
def test_training_smoke(tmp_path):
    out = tmp_path / "w"
    info = train_main([
        "--data", str(SAMPLE), "--out", str(out), "--seed", "0", "--epochs", "2", "--max-steps", "3",
        "--batch", "16", "--cache", str(tmp_path / "cache"), "--threads", "1",
    ])
    assert (out / "head.safetensors").exists() and (out / "meta.json").exists()
    assert all(math.isfinite(h["train_loss"]) for h in info["history"])
    assert info["head_delta"] > 0, "training did not change the head"
    head, meta = load(out)
    assert isinstance(head, PolicyHead)
    assert 0 < meta.temperature and set(meta.thresholds) == {"input", "output"}
    # the trained artifact serves through the registry
    defaults = PolicySet.load(ROOT / "policies.yaml")
    guard = build_guard("embedded", {"weights": str(out)}, defaults)
    try:
        pol = tuple(p for p in defaults.active(Direction.INPUT) if p.engine == "model")
        verdict = asyncio.run(guard.check(CheckRequest(Direction.INPUT, (Turn("user", "hello"),), pol, defaults.version)))
        assert set(verdict.results) == {p.id for p in pol}
    finally:
        asyncio.run(guard.aclose())
