"""Stage 1: supervised fine-tuning on policy-guided reasoning traces.

    python -m training.rsafe.sft training/configs/paper_sft.yaml

1. Read the examples built by `python -m training.rsafe.data` (guard prompts + labels).
2. Get reasoning traces from a teacher prompted with the guard prompt
   (`training.rsafe.teacher`: an OpenAI-compatible endpoint, or the base model itself
   for self-distillation) and keep only well-formed traces whose verdict matches
   the label (rejection sampling). Examples that already carry a known-good
   reasoning (the synthetic task) can skip the teacher (`teacher.kind: none`).
3. Fine-tune with TRL's `SFTTrainer` on prompt/completion pairs, in the
   conversational format, so the loss covers the completion only and the
   sequence is built by the model's chat template, as vLLM will build it.
   Full fine-tuning, or LoRA when the config has a `lora` section.

The trained checkpoint directory holds the tokenizer too; `training.rsafe.export`
turns it (or a LoRA adapter) into a directory vLLM serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from training.rsafe.data import Example, example_from_row, read_jsonl, write_jsonl
from training.rsafe.teacher import EndpointTeacher, LocalTeacher, Teacher, rejection_sample


def gold_rows(examples: Sequence[Example], name_ids: bool = True) -> list[dict[str, Any]]:
    """SFT rows from examples whose reasoning is known (no teacher needed)."""
    return [
        e.row() | {"completion": [{"role": "assistant", "content": e.target(name_ids)}]} for e in examples if e.reasoning
    ]


def make_teacher(spec: dict[str, Any], base_model: str) -> Teacher | None:
    kind = spec.get("kind", "endpoint")
    if kind == "none":
        return None
    common = {"temperature": float(spec.get("temperature", 0.7)), "max_tokens": int(spec.get("max_tokens", 512))}
    if kind == "endpoint":
        return EndpointTeacher(spec["base_url"], spec["model"], api_key=spec.get("api_key"), **common)
    if kind == "self":  # self-distillation: the base model reasons, the label filters
        return LocalTeacher(spec.get("model_dir", base_model), **common)
    raise ValueError(f"unknown teacher kind {kind!r} (endpoint | self | none)")


def collect(examples: Sequence[Example], teacher: Teacher | None, *, samples: int = 4, match_ids: bool = False) -> list[dict[str, Any]]:
    """Accepted SFT rows: from the teacher with rejection sampling, or the known traces."""
    if teacher is None:
        rows = gold_rows(examples)
        print(f"sft traces: {len(rows)} known-good traces (no teacher)")
        return rows
    rows, stats = rejection_sample(examples, teacher, samples=samples, match_ids=match_ids)
    print(f"sft traces: {stats}")
    return rows


def lora_config(spec: dict[str, Any] | None):
    if not spec:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=int(spec.get("r", 16)),
        lora_alpha=int(spec.get("alpha", 32)),
        lora_dropout=float(spec.get("dropout", 0.05)),
        target_modules=spec.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )


def balanced_weights(tokenizer, rows: Sequence[dict[str, Any]], words: Sequence[str], weight: float) -> dict[int, float]:
    """Loss weights for the decision tokens `words`: `weight` on average, split against their frequency.

    Each decision word's tokens get `weight / (k * share)` (k words, `share` its
    share of the decisions in `rows`), so together the decisions weigh `weight`
    times an ordinary token and every class weighs the same: answering one word
    everywhere no longer lowers the loss, only reading does (docs/training.md).
    """
    ids = [tokenizer.convert_tokens_to_ids(w) for w in words]
    if None in ids or tokenizer.unk_token_id in ids:
        raise ValueError(f"each decision word must be one token of the tokenizer: {list(words)} -> {ids}")
    counts = dict.fromkeys(ids, 0)
    for r in rows:
        for i in tokenizer(r["completion"][-1]["content"], add_special_tokens=False)["input_ids"]:
            if i in counts:
                counts[i] += 1
    total = sum(counts.values())
    return {i: weight * total / (len(ids) * c) for i, c in counts.items() if c}


def weighted_loss(logits, labels, weights: dict[int, float]):
    """Next-token cross-entropy where label token `t` weighs `weights.get(t, 1)`; the weighted mean."""
    import torch

    y = labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), y.clamp(min=0).reshape(-1), reduction="none"
    ).view_as(y)
    w = (y != -100).float()
    for token, value in weights.items():
        w = torch.where(y == token, w * value, w)
    return (ce * w).sum() / w.sum().clamp(min=1e-8)


def _weighted_trainer(weights: dict[int, float]):
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        """`SFTTrainer` whose loss weighs some label tokens more (`weighted_loss`)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
            loss = weighted_loss(outputs.logits, labels, weights)
            return (loss, outputs) if return_outputs else loss

    return WeightedSFTTrainer


def train_sft(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    output_dir: str | Path,
    *,
    args: dict[str, Any] | None = None,
    lora: dict[str, Any] | None = None,
    save: bool = True,
    token_weights: dict[int, float] | None = None,
    callbacks: Sequence[Any] = (),
):
    """Run `SFTTrainer` on prompt/completion rows; returns the trainer (its `.model` is trained).

    `token_weights` ({token id: weight}) switches to a weighted completion loss
    (`weighted_loss`), e.g. `balanced_weights` for the decision words.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    defaults = {"report_to": [], "save_strategy": "no", "logging_steps": 10, "completion_only_loss": True}
    config = SFTConfig(output_dir=str(output_dir), **(defaults | (args or {})))
    trainer_cls = _weighted_trainer(token_weights) if token_weights else SFTTrainer
    trainer = trainer_cls(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(lora),
        callbacks=list(callbacks),
    )
    return fit(trainer, tokenizer, output_dir, save=save)


def fit(trainer: Any, tokenizer: Any, output_dir: str | Path, *, save: bool) -> Any:
    """Train; with `save`, write the model and its tokenizer to `output_dir` as one checkpoint."""
    trainer.train()
    if save:
        trainer.save_model(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
    return trainer


def run(config: dict[str, Any]) -> Path:
    """The whole stage from a config mapping (see training/configs/paper_sft.yaml)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(config["output_dir"])
    examples = [example_from_row(r) for r in read_jsonl(config["data"])]
    teacher_spec = config.get("teacher", {"kind": "none"})
    rows = collect(
        examples,
        make_teacher(teacher_spec, config["model"]),
        samples=int(teacher_spec.get("samples", 4)),
        match_ids=bool(teacher_spec.get("match_ids", False)),
    )
    if not rows:
        raise SystemExit("no accepted traces: check the teacher endpoint and the data")
    write_jsonl(out / "traces.jsonl", rows)
    tokenizer = AutoTokenizer.from_pretrained(config["model"])
    model = AutoModelForCausalLM.from_pretrained(config["model"], **config.get("model_init_kwargs", {}))
    train_sft(model, tokenizer, rows, out, args=config.get("sft"), lora=config.get("lora"))
    print(f"sft checkpoint: {out}")
    return out


def load_config(path: str | Path, **overrides: Any) -> dict[str, Any]:
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def cli(config: Path, output_dir: str | None = None, data: str | None = None, model: str | None = None) -> None:
    """Stage 1 (SFT on teacher traces). Typer-compatible: `rsafe train sft CONFIG`."""
    run(load_config(config, output_dir=output_dir, data=data, model=model))


if __name__ == "__main__":
    import typer

    typer.run(cli)
