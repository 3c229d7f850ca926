"""Stage 2: GRPO with rule-based rewards (RSafe's "reinforced alignment"), composed on TRL.

    accelerate launch --config_file training/configs/accelerate/zero3_4gpu.yaml \\
        -m training.rsafe.grpo training/configs/paper_grpo.yaml

For each guard prompt the policy samples a group of answers; each answer gets
the rule reward (`training.rsafe.rewards`, by name), the group-normalized reward is
the advantage, and a clipped policy-gradient step follows. TRL's
`GRPOTrainer` does the algorithm; this file only wires data, rewards and config.

How this departs from the RSafe paper, and why:
1. Trainer: TRL's `GRPOTrainer` instead of verl. Same algorithm settings: group
   size 4, no KL term (`beta: 0`), clip 0.2, token-mean loss aggregation
   (verl's default; TRL calls it `loss_type: dapo`), advantages normalized by
   the group's standard deviation. TRL counts its batch in completions, so the
   paper's 32 prompts x 4 rollouts is an effective batch of 128 completions.
2. Format reward: RSafe's regex (`<think>.*</think>.*\\boxed{.*}`) *and* the
   serving parser must read a verdict (one think block, a safe/unsafe box
   after it, no contradicting boxes). Answers the gateway would treat as a
   guard failure must not be rewarded as well formed.
3. Accuracy reads the last box after `</think>`, not the last box anywhere: a
   box inside the reasoning is not the answer, and serving reads it this way.
4. Prompt: the guard's template (`guard.rsafe.prompt`) fences the untrusted
   conversation and asks for a `Violated: <ids>` line after the box, so the
   gateway can apply per-policy actions. The optional `policy_ids` reward
   trains that line; it is off in the paper configs (`rewards: [rsafe]`).
5. Data: policy sets are sampled per example, including sets that leave out an
   example's own category (its label flips to safe), so that the model learns
   to follow the policies it is given, not a fixed taxonomy (`training.rsafe.data`).
6. Stage 1 (SFT) is ours: the paper starts RL from Qwen2.5-7B-Instruct, whose
   prompted reasoning is already well formed. With such a model, skip SFT and
   point this stage at the base model; a small or from-scratch model needs SFT
   (or self-distillation) before rewards are ever non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.rsafe.data import read_jsonl
from training.rsafe.rewards import get_reward_funcs
from training.rsafe.sft import fit, lora_config

COLUMNS = ("prompt", "label", "violated", "policy_ids")


def train_grpo(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    output_dir: str | Path,
    *,
    rewards: Sequence[str] = ("rsafe",),
    reward_weights: Sequence[float] | None = None,
    reward_params: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
    lora: dict[str, Any] | None = None,
    save: bool = True,
    callbacks: Sequence[Any] = (),
    monitor: Any = None,
):
    """Run `GRPOTrainer` on guard-prompt rows; returns the trainer (its `.model` is trained).

    `monitor` (a `training.rsafe.grpo_monitor.RolloutMonitor`) wraps the first reward
    and records each step's verdict shares and within-group reward spread.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = Dataset.from_list([{k: r.get(k) or ([] if k != "label" else r[k]) for k in COLUMNS} for r in rows])
    defaults = {
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 10,
        "beta": 0.0,
        "loss_type": "dapo",
        "num_generations": 4,
        "temperature": 0.7,
    }
    settings = defaults | (args or {})
    if reward_weights is not None:
        settings["reward_weights"] = list(reward_weights)
    config = GRPOConfig(output_dir=str(output_dir), **settings)
    tokenizer.padding_side = "left"
    funcs = get_reward_funcs(rewards, **(reward_params or {}))
    if monitor is not None:
        funcs[0] = monitor.wrap(funcs[0])
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(lora),
        callbacks=list(callbacks),
    )
    return fit(trainer, tokenizer, output_dir, save=save)


def run(config: dict[str, Any]) -> Path:
    """The whole stage from a config mapping (see training/configs/paper_grpo.yaml)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(config["output_dir"])
    rows = read_jsonl(config["data"])
    tokenizer = AutoTokenizer.from_pretrained(config["model"], padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(config["model"], **config.get("model_init_kwargs", {}))
    train_grpo(
        model,
        tokenizer,
        rows,
        out,
        rewards=config.get("rewards", ["rsafe"]),
        reward_weights=config.get("reward_weights"),
        reward_params=config.get("reward_params"),
        args=config.get("grpo"),
        lora=config.get("lora"),
    )
    print(f"grpo checkpoint: {out}")
    return out


def cli(config: Path, output_dir: str | None = None, data: str | None = None, model: str | None = None) -> None:
    """Stage 2 (GRPO with rule rewards). Typer-compatible: `rsafe train grpo CONFIG`."""
    from training.rsafe.sft import load_config

    run(load_config(config, output_dir=output_dir, data=data, model=model))


if __name__ == "__main__":
    import typer

    typer.run(cli)
