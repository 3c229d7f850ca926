"""The CPU demonstration runs end to end (tiny budget: the numbers are not the point here)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.slow


def test_demo_pipeline_end_to_end(tmp_path, capsys):
    import torch

    from training.demo import DemoConfig, build_base, run_seed, table

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
    text = table([result])
    assert "| after SFT |" in text and "| after GRPO |" in text
