"""The paper reproduction configs are valid TRL configs with the paper's numbers; accelerate configs match their names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl")

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def test_paper_grpo_config_has_the_paper_settings_and_builds():
    from trl import GRPOConfig

    cfg = load("paper_grpo.yaml")
    g = cfg["grpo"]
    assert cfg["rewards"] == ["rsafe"]
    assert g["learning_rate"] == pytest.approx(1e-7) and g["num_generations"] == 4
    assert g["max_completion_length"] == 512 and g["temperature"] == pytest.approx(0.7)
    assert g["num_train_epochs"] == 3 and g["beta"] == 0.0
    # 32 prompts x 4 rollouts = 128 completions per optimizer step on the 4-GPU launch it documents.
    assert g["per_device_train_batch_size"] * g["gradient_accumulation_steps"] * 4 == 32 * g["num_generations"]
    # bf16 needs a GPU; everything else must be accepted as is (CPU test machine).
    config = GRPOConfig(output_dir="/tmp/unused", **(g | {"bf16": False}))
    assert config.use_vllm and config.vllm_mode == "colocate"


def test_paper_sft_config_builds():
    from trl import SFTConfig

    cfg = load("paper_sft.yaml")
    assert cfg["teacher"]["kind"] in ("endpoint", "self", "none")
    SFTConfig(output_dir="/tmp/unused", **(cfg["sft"] | {"bf16": False}))


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_accelerate_configs(gpus):
    cfg = load(f"accelerate/zero3_{gpus}gpu.yaml")
    assert cfg["num_processes"] == gpus and cfg["distributed_type"] == "DEEPSPEED"
    assert cfg["deepspeed_config"]["zero_stage"] == 3
    assert cfg["deepspeed_config"]["offload_optimizer_device"] == ("cpu" if gpus == 1 else "none")


def test_category_map_targets_known_policies():
    from guard.policies import PolicySet

    ids = {p.id for p in PolicySet.load(Path(__file__).resolve().parents[1] / "policies.yaml").policies}
    for source, targets in load("category_map.yaml").items():
        assert set(targets) <= ids, source
