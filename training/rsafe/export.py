"""Export a trained guard as a directory vLLM serves as is, with a model card.

    python -m training.rsafe.export runs/grpo runs/export/rsafe-guard --base-model Qwen2.5-7B-Instruct

- A LoRA checkpoint (an `adapter_config.json`) is merged into its base model;
  a full checkpoint is re-saved. Weights go out as safetensors.
- The tokenizer goes with it, and it must carry a chat template: vLLM's
  `/v1/chat/completions` (what the guard engine calls) applies it, and a guard
  served with another template than it was trained with is a different guard.
- `generation_config.json` stops at the tokenizer's EOS, so vLLM stops there.
- `rsafe_guard.json` records the prompt template version the model was trained
  on (`guard.rsafe.prompt.TEMPLATE_VERSION`); `README.md` is the model card,
  including the data licenses the weights inherit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from guard.rsafe.prompt import TEMPLATE_VERSION

NC_NOTE = (
    "Some training sets in `../shared/data/train` (ToxicChat, the Alpaca/AlpacaEval instructions, "
    "the refusal-direction completions) are licensed CC BY-NC 4.0. A model trained on them inherits the "
    "non-commercial restriction: use it for research and evaluation only, unless you retrain it on data "
    "whose licenses allow your use."
)


def model_card(name: str, base_model: str, stages: Sequence[str], data: Sequence[str], serve_dir: str) -> str:
    data_lines = "\n".join(f"- {d}" for d in data) or "- (not recorded)"
    return f"""# {name}

An RSafe-style reasoning guard for the RSafe Gateway: given safety policies written in plain language and a
conversation, it reasons inside `<think> ... </think>`, answers `\\boxed{{safe}}` or `\\boxed{{unsafe}}`, and
names the violated policy ids on a `Violated:` line.

- Base model: {base_model}
- Training: {" -> ".join(stages)} (see docs/training.md of the gateway)
- Prompt template: `{TEMPLATE_VERSION}` (`guard/rsafe/prompt.py`). Serve it only with a gateway whose
  template version matches: a guard read another prompt than it was trained on is not the same guard.

## Serve

```bash
python -m vllm.entrypoints.openai.api_server --model {serve_dir} --served-model-name rsafe-guard
```

and in `policies.yaml`:

```yaml
settings:
  guard:
    backend: rsafe
    options: {{engine: vllm, url: http://localhost:8000, model: rsafe-guard}}
```

## Training data

{data_lines}

## License

{NC_NOTE}

## Limits

A guard model makes mistakes in both directions and can be argued with by content it reads; the gateway
fences the content and fails closed on unreadable answers, but evaluate it on your own traffic
(`rsafe eval`) before relying on it.
"""


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    base_model: str | None = None,
    stages: Sequence[str] = ("SFT", "GRPO"),
    data: Sequence[str] = (),
    name: str = "rsafe-guard",
) -> Path:
    """Write the servable directory; returns its path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint, out = Path(checkpoint), Path(out_dir)
    if (checkpoint / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(checkpoint)).merge_and_unload()
        base_model = base_model or json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"]
    else:
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint))
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint) if (checkpoint / "tokenizer_config.json").exists() else base_model)
    if not tokenizer.chat_template:
        raise ValueError(f"{checkpoint}: the tokenizer has no chat template; vLLM's chat endpoint needs the training one")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    base = base_model or str(getattr(model.config, "_name_or_path", "") or checkpoint)
    meta = {"template_version": TEMPLATE_VERSION, "base_model": base, "stages": list(stages), "data": list(data)}
    (out / "rsafe_guard.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.md").write_text(model_card(name, base, stages, data, str(out)))
    return out


def cli(
    checkpoint: Path,
    out_dir: Path,
    base_model: str | None = None,
    stage: list[str] | None = None,
    data: list[str] | None = None,
    name: str = "rsafe-guard",
) -> None:
    """Export a checkpoint for vLLM. Typer-compatible: `rsafe train export CHECKPOINT OUT_DIR`."""
    path = export(checkpoint, out_dir, base_model=base_model, stages=stage or ["SFT", "GRPO"], data=data or [], name=name)
    print(f"exported {path} (template {TEMPLATE_VERSION}); serve: python -m vllm.entrypoints.openai.api_server --model {path}")


if __name__ == "__main__":
    import typer

    typer.run(cli)
