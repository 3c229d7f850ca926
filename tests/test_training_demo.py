"""The CPU demonstration runs end to end (tiny budget: the numbers are not the point here)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.slow


def test_demo_pipeline_end_to_end(tmp_path, capsys):
    import torch

    from training.demo.run import DemoConfig, build_base, run_seed, table

    torch.set_num_threads(1)
    cfg = DemoConfig(sft_examples=160, grpo_prompts=16, eval_examples=8, sft_steps=8, grpo_steps=1, teacher_samples=2,
                     pretrain_max_steps=3)
    info = build_base(cfg, tmp_path / "base", log=lambda line: None)
    assert info["pretrain"]["steps"] == 3 and 0.0 <= info["pretrain"]["game_accuracy"] <= 1.0
    assert build_base(cfg, tmp_path / "base") == info  # reused, not rebuilt, while the recipe is unchanged
    result = run_seed(0, cfg, tmp_path, tmp_path / "base", evaluate_export=True)
    json.dumps(result)
    for stage in ("sft", "grpo"):
        for split in ("heldout", "indist"):
            scores = result[stage][split]
            assert scores["n"] == 8 and 0.0 <= scores["well_formed"] <= 1.0 and 0.0 <= scores["f1"] <= 1.0
    assert 0 < result["sft_rows"] <= 160  # rejection sampling dropped the oracle's wrong/malformed answers
    for stage in ("base", "sft", "grpo"):
        assert (tmp_path / stage / "config.json").exists()
    served = result["rsafe_eval"]  # the exported model through `rsafe eval --guard rsafe`
    assert served["n"] == 8 and 0.0 <= served["f1"] <= 1.0 and 0 <= served["errors"] <= 8
    assert (tmp_path / "export" / "rsafe_guard.json").exists() and (tmp_path / "eval" / "eval.md").exists()
    shares = [result["grpo"]["heldout"][f"share_{k}"] for k in ("safe", "unsafe", "unreadable")]
    assert sum(shares) == pytest.approx(1.0)  # every held-out answer is one verdict or unreadable
    (window,) = result["grpo_rollouts"]  # one GRPO step: the monitor saw its 4 x 8 rollouts
    assert window["steps"] == "1-1" and 0.0 <= window["group_reward_std"] <= 0.5
    assert sum(window[f"share_{k}"] for k in ("safe", "unsafe", "unreadable")) == pytest.approx(1.0)
    assert isinstance(result["grpo_collapsed"], bool) and set(result["sft_decision_weights"]) == {"Ġpresent", "Ġabsent"}
    text = table([result])
    assert "| after SFT |" in text and "| after GRPO |" in text
    assert "verdict shares safe/unsafe/unreadable" in text and "GRPO rollouts steps 1-1" in text


def test_demo_command_line(tmp_path, capsys):
    """`python -m training.demo` as a user runs it: --set overrides, --first-seed, the table and results.json."""
    from training.demo.run import main

    tiny = ["sft_examples=160", "grpo_prompts=16", "eval_examples=8", "sft_steps=8", "grpo_steps=1", "pretrain_max_steps=3",
            "grpo_rewards=rsafe,policy_ids"]
    argv = ["--seeds", "1", "--first-seed", "5", "--jobs", "1", "--threads", "1", "--base-threads", "1", "--workdir", str(tmp_path)]
    assert main(argv + [arg for item in tiny for arg in ("--set", item)]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in results] == [5]
    assert 0 < results[0]["sft_rows"] <= 160 and results[0]["sft"]["heldout"]["n"] == 8
    assert results[0]["rsafe_eval"]["n"] == 8  # the first seed's model is exported and scored
    assert (tmp_path / "seed5" / "export" / "rsafe_guard.json").exists()
    assert "| after GRPO |" in out and "held-out F1 per seed (SFT -> GRPO): seed 5:" in out
    assert "rsafe eval --guard rsafe" in out and "wall time:" in out
