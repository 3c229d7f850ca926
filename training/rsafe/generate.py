"""Batched generation with a local checkpoint, and the scores the demo table reports.

Generation applies the checkpoint's chat template to the guard's messages, the
way vLLM's `/v1/chat/completions` does when it serves the exported model, and
decodes without special tokens (vLLM's default), so the parser sees the same
text here as behind the gateway.

Scoring: an answer the parser cannot read counts as a wrong answer whatever
the label (a false negative on unsafe content, a false positive on safe
content; the gateway would apply the failure mode, closed by default). So a
model that emits garbage scores F1 = 0, not the F1 of "block everything".
The well-formed rate is reported next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guard.errors import GuardFailure
from guard.rsafe.parse import parse_output
from training.rsafe.data import Example


def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    batch_size: int = 32,
) -> list[tuple[str, bool]]:
    """(text, finished) per conversation; `finished` is False when the token limit cut it."""
    import torch

    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    out: list[tuple[str, bool]] = []
    model.eval()
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start : start + batch_size]
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            seqs = model.generate(
                **enc, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        for row in seqs[:, enc["input_ids"].shape[1] :]:
            finished = bool((row == eos).any())
            out.append((tokenizer.decode(row, skip_special_tokens=True), finished))
    return out


@dataclass(frozen=True)
class Scores:
    n: int
    well_formed: float  # share of answers the guard's parser reads
    accuracy: float
    precision: float
    recall: float
    f1: float  # on the unsafe class; an unreadable answer is always wrong

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("n", "well_formed", "accuracy", "precision", "recall", "f1")}


def score(examples: Sequence[Example], answers: Sequence[tuple[str, bool]]) -> Scores:
    tp = fp = fn = ok = readable = 0
    for example, (text, finished) in zip(examples, answers, strict=True):
        try:
            pred = parse_output(text, finished=finished, policy_ids=example.policy_ids).label
            readable += 1
        except GuardFailure:
            pred = "error"
        gold = example.label
        ok += pred == gold
        tp += pred == "unsafe" and gold == "unsafe"
        fp += pred != "safe" and gold == "safe"
        fn += pred != "unsafe" and gold == "unsafe"
    n = max(1, len(examples))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(len(examples), readable / n, ok / n, precision, recall, f1)


def evaluate(model: Any, tokenizer: Any, examples: Sequence[Example], *, max_new_tokens: int = 512, batch_size: int = 32) -> Scores:
    """Greedy answers for `examples`, scored (see `score`)."""
    answers = generate(model, tokenizer, [e.messages for e in examples], max_new_tokens=max_new_tokens, batch_size=batch_size)
    return score(examples, answers)
