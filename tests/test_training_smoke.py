"""Smoke: a step or two of SFT and of GRPO on a tiny model, then the checkpoint through the guard engine."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from guard.errors import GuardFailure  # noqa: E402
from guard.policies import Direction, Policy  # noqa: E402
from guard.verdict import CheckRequest, Turn, Verdict  # noqa: E402
from training.demo.synthetic import make_split  # noqa: E402
from training.demo.tiny import build_tiny, template_phrases  # noqa: E402

pytestmark = pytest.mark.slow
COMMON = {"use_cpu": True, "bf16": False, "disable_tqdm": True, "report_to": [], "logging_steps": 1, "seed": 0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    examples = make_split(64, seed=0)
    out = tmp_path_factory.mktemp("tiny") / "base"
    build_tiny(corpus(examples), out, seed=0, vocab_size=600, phrases=template_phrases([e.prompt for e in examples]))
    return out, examples


def corpus(examples) -> list[str]:
    return [t for e in examples for t in (e.prompt, e.target())] + ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"] * 5


def load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_all_changed(before: dict[str, torch.Tensor], model) -> None:
    after = dict(model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters not updated: {unchanged}"


def losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def assert_read_by_the_guard(result: Verdict | GuardFailure, example) -> None:
    """The checkpoint loaded and generated: a verdict on every policy, or (garbage after two steps)
    an answer the parser refused, which the pipeline fails closed. A checkpoint that does not load
    or generate raises something else, or a GuardFailure that is not about the answer."""
    if isinstance(result, Verdict):
        assert set(result.results) == set(example.policy_ids), result
    else:
        assert isinstance(result, GuardFailure)
        assert any(w in str(result) for w in ("answer", "think", "boxed", "truncated", "verdict")), result


def guard_check(checkpoint: Path, example) -> Verdict | GuardFailure:
    """The guard engine's own path: RSafe prompt -> transformers engine -> parser -> Verdict."""
    from guard.rsafe import build

    policies = tuple(Policy(id=pid, description=text) for pid, text in _categories(example))
    request = CheckRequest(Direction(example.direction), (Turn("user", _content(example)),), policies)

    async def go():
        guard = build({"engine": "transformers", "model": str(checkpoint), "max_tokens": 48, "threads": 1}, None)
        try:
            return await guard.check(request)
        except GuardFailure as exc:
            return exc
        finally:
            await guard.aclose()

    return asyncio.run(go())


def _categories(example) -> list[tuple[str, str]]:
    block = example.prompt.split("<BEGIN UNSAFE CONTENT CATEGORIES>\n")[1].split("\n<END UNSAFE CONTENT CATEGORIES>")[0]
    return [tuple(line.split(": ", 1)) for line in block.splitlines()]


def _content(example) -> str:
    return example.prompt.split("<BEGIN CONVERSATION>\n\n")[1].split("\n\n<END CONVERSATION>")[0].split(": ", 1)[1]


def test_saved_tokenizer_reloads_to_the_same_ids(tiny):
    """What `AutoTokenizer` (and vLLM) load must tokenize exactly as training did.

    transformers rebuilds a qwen2 checkpoint's tokenizer as `Qwen2Tokenizer`, with
    Qwen's own normalizer and pre-tokenizer; a tokenizer trained with another
    pipeline (digits merged, say) was silently re-split on reload, so the saved
    model saw other ids than the trained one.
    """
    from transformers import AutoTokenizer

    from training.demo.tiny import train_tokenizer

    base, examples = tiny
    fresh = train_tokenizer(corpus(examples), vocab_size=600,
                            phrases=template_phrases([e.prompt for e in examples]))
    reloaded = AutoTokenizer.from_pretrained(str(base))
    for e in examples[:16]:
        text = reloaded.apply_chat_template(e.messages, add_generation_prompt=True, tokenize=False) + e.target()
        ids = reloaded(text, add_special_tokens=False)["input_ids"]
        assert ids == fresh(text, add_special_tokens=False)["input_ids"]
        assert reloaded.decode(ids, skip_special_tokens=False) == text
    assert reloaded("Violated: S7, S13 in 2026")["input_ids"] == fresh("Violated: S7, S13 in 2026")["input_ids"]


def test_sft_steps_train_every_parameter_and_reload_through_the_guard(tiny, tmp_path):
    from training.rsafe.sft import gold_rows, train_sft

    base, examples = tiny
    model, tok = load(base)
    before = snapshot(model)
    out = tmp_path / "sft"
    trainer = train_sft(model, tok, gold_rows(examples), out, args=COMMON | {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2})
    assert losses(trainer) and all(math.isfinite(x) for x in losses(trainer))
    assert_all_changed(before, trainer.model)

    reloaded, _ = load(out)
    for name, p in reloaded.named_parameters():
        assert torch.equal(p, dict(trainer.model.named_parameters())[name].detach()), name
    example = next(e for e in examples if e.direction == "input")
    assert_read_by_the_guard(guard_check(out, example), example)


def test_grpo_steps_train_every_parameter_and_reload_through_the_guard(tiny, tmp_path):
    from training.rsafe.grpo import train_grpo

    base, examples = tiny
    model, tok = load(base)
    before = snapshot(model)
    out = tmp_path / "grpo"
    # A random model earns rsafe = 0 everywhere (zero advantage, zero gradient); the length term
    # varies with the sampled length, so the step has a signal to follow.
    trainer = train_grpo(
        model, tok, [e.row() for e in examples[:8]], out,
        rewards=["rsafe", "length"], reward_params={"length_target_chars": 8},
        args=COMMON | {"max_steps": 2, "per_device_train_batch_size": 8, "num_generations": 4,
                       "max_completion_length": 16, "learning_rate": 1e-2, "temperature": 1.0},
    )
    assert losses(trainer) and all(math.isfinite(x) for x in losses(trainer))
    assert_all_changed(before, trainer.model)
    example = next(e for e in examples if e.direction == "input")
    assert_read_by_the_guard(guard_check(out, example), example)


def test_export_makes_a_servable_directory(tiny, tmp_path):
    import json

    from guard.rsafe.prompt import TEMPLATE_VERSION
    from training.rsafe.export import export

    base, examples = tiny
    out = export(base, tmp_path / "export", stages=["SFT"], data=["synthetic"])
    model, tok = load(out)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert json.loads((out / "rsafe_guard.json").read_text())["template_version"] == TEMPLATE_VERSION
    card = (out / "README.md").read_text()
    assert "CC BY-NC" in card and TEMPLATE_VERSION in card
    assert (out / "model.safetensors").exists()


def test_lora_sft_then_export_merges_the_adapter(tiny, tmp_path):
    from training.rsafe.export import export
    from training.rsafe.sft import gold_rows, train_sft

    base, examples = tiny
    model, tok = load(base)
    out = tmp_path / "lora"
    trainer = train_sft(
        model, tok, gold_rows(examples[:16]), out,
        args=COMMON | {"max_steps": 1, "per_device_train_batch_size": 4, "learning_rate": 1e-2},
        lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    )
    assert (out / "adapter_config.json").exists()
    lora_params = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert lora_params and all("lora_" in n for n in lora_params)
    merged = export(out, tmp_path / "merged", base_model=str(base))
    reloaded, _ = load(merged)
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    original, _ = load(base)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(reloaded.named_parameters())[q], dict(original.named_parameters())[q])


def test_config_driven_stages_run_from_yaml(tiny, tmp_path):
    """`python -m training.rsafe.sft CONFIG` / `training.rsafe.grpo CONFIG` as a user runs them (CPU overrides)."""
    import yaml

    from training.rsafe import grpo, sft
    from training.rsafe.data import examples_to_jsonl

    base, examples = tiny
    data = tmp_path / "train.jsonl"
    examples_to_jsonl(data, examples[:16])
    cpu = {"use_cpu": True, "bf16": False, "gradient_checkpointing": False, "max_steps": 1, "report_to": [], "disable_tqdm": True}
    sft_cfg = tmp_path / "sft.yaml"
    sft_cfg.write_text(yaml.safe_dump({
        "model": str(base), "data": str(data), "output_dir": str(tmp_path / "sft"),
        "teacher": {"kind": "none"}, "sft": cpu | {"per_device_train_batch_size": 4},
    }))
    sft.cli(sft_cfg)
    assert (tmp_path / "sft" / "traces.jsonl").exists() and (tmp_path / "sft" / "config.json").exists()
    grpo_cfg = tmp_path / "grpo.yaml"
    grpo_cfg.write_text(yaml.safe_dump({
        "model": str(tmp_path / "sft"), "data": str(data), "output_dir": str(tmp_path / "grpo"),
        "rewards": ["rsafe", "policy_ids"], "reward_weights": [1.0, 0.2],
        "grpo": cpu | {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 8},
    }))
    grpo.cli(grpo_cfg)
    assert (tmp_path / "grpo" / "config.json").exists()
