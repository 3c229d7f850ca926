"""Reasoning traces for Stage 1: ask a teacher, keep only what is well formed and right.

A teacher answers the guard prompt (exactly what the guard is served) in the
guard's answer format. Two kinds:

- `EndpointTeacher`: any OpenAI-compatible `/v1/chat/completions` server (vLLM,
  OpenAI, a LiteLLM proxy, the gateway's upstream). Reasoning models that return
  their thoughts in `reasoning_content` (vLLM's reasoning parsers, DeepSeek) get
  them put back inside `<think>...</think>`.
- `LocalTeacher`: a checkpoint run in-process with `transformers.generate`. Point
  it at the base model itself for self-distillation (the RSafe paper's setting:
  the base model's own policy-guided reasoning). For speed on GPUs, serve the
  base model with vLLM and use `EndpointTeacher` instead; it is the same thing.

`rejection_sample` keeps, per example, the first sample that the guard's parser
reads (see `training.rsafe.rewards.read_answer`) and whose verdict equals the label
(and, with `match_ids`, whose violated ids equal the gold ids when known).
Examples with no acceptable sample are dropped and counted.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from training.rsafe.data import Example
from training.rsafe.rewards import read_answer


@dataclass(frozen=True)
class Sample:
    text: str
    finished: bool  # False when the teacher stopped at its token limit


class Teacher(Protocol):
    def sample(self, messages: Sequence[list[dict[str, str]]], n: int) -> list[list[Sample]]:
        """`n` samples for each conversation."""
        ...


def _join_reasoning(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning and "<think>" not in content:
        return f"<think>\n{reasoning.strip()}\n</think>\n{content.strip()}"
    return content


class EndpointTeacher:
    """A teacher behind an OpenAI-compatible chat completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 512,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        retries: int = 3,
        client: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.retries = retries
        self.client = client or httpx.Client(headers=headers, timeout=timeout_s)

    def _one(self, messages: list[dict[str, str]], n: int) -> list[Sample]:
        out: list[Sample] = []
        while len(out) < n:  # some servers ignore `n` and answer one choice
            body = {
                "model": self.model,
                "messages": messages,
                "n": n - len(out),
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
            choices = self._post(body)["choices"]
            if not choices:
                raise RuntimeError("teacher endpoint returned no choices")
            out += [Sample(_join_reasoning(c["message"]), c.get("finish_reason") != "length") for c in choices]
        return out[:n]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried on connection errors, 429 and 5xx (teachers are remote and busy)."""
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.post(self.url, json=body)
                if resp.status_code != 429 and resp.status_code < 500:
                    resp.raise_for_status()
                    return resp.json()
                error: Exception = httpx.HTTPStatusError(f"HTTP {resp.status_code}", request=resp.request, response=resp)
            except httpx.TransportError as exc:
                error = exc
            if attempt < self.retries:
                time.sleep(min(8.0, 0.5 * 2**attempt))
        raise error

    def sample(self, messages: Sequence[list[dict[str, str]]], n: int) -> list[list[Sample]]:
        with cf.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, n), messages))


class LocalTeacher:
    """A checkpoint sampled in-process (self-distillation from the base model)."""

    def __init__(self, model_dir: str, *, temperature: float = 0.7, max_tokens: int = 512, batch_size: int = 16) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def sample(self, messages: Sequence[list[dict[str, str]]], n: int) -> list[list[Sample]]:
        from training.rsafe.generate import generate

        flat = [m for m in messages for _ in range(n)]
        texts = generate(
            self.model, self.tokenizer, flat, max_new_tokens=self.max_tokens,
            temperature=self.temperature, batch_size=self.batch_size,
        )
        samples = [Sample(t, finished) for t, finished in texts]
        return [samples[i * n : (i + 1) * n] for i in range(len(messages))]


@dataclass
class RejectionStats:
    examples: int = 0
    kept: int = 0
    reasons: Counter | None = None

    def __str__(self) -> str:
        why = ", ".join(f"{k}={v}" for k, v in sorted((self.reasons or {}).items()))
        return f"kept {self.kept}/{self.examples} examples ({why or 'no rejected samples'})"


def judge(sample: Sample, example: Example, *, match_ids: bool = False) -> str:
    """'ok' or why the sample is rejected: truncated, malformed, wrong_label, wrong_ids."""
    if not sample.finished:
        return "truncated"
    parsed = read_answer(sample.text, example.policy_ids)
    if parsed is None:
        return "malformed"
    if parsed.label != example.label:
        return "wrong_label"
    if match_ids and example.label == "unsafe" and example.violated and set(parsed.violated) != set(example.violated):
        return "wrong_ids"
    return "ok"


def rejection_sample(
    examples: Sequence[Example], teacher: Teacher, *, samples: int = 4, match_ids: bool = False, chunk: int = 256
) -> tuple[list[dict[str, Any]], RejectionStats]:
    """SFT rows (prompt + accepted completion) and what was rejected, counted by reason."""
    rows: list[dict[str, Any]] = []
    stats = RejectionStats(reasons=Counter())
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        answers = teacher.sample([e.messages for e in part], samples)
        for example, candidates in zip(part, answers):
            stats.examples += 1
            for candidate in candidates:
                verdict = judge(candidate, example, match_ids=match_ids)
                if verdict == "ok":
                    rows.append(example.row() | {"completion": [{"role": "assistant", "content": candidate.text.strip()}]})
                    stats.kept += 1
                    break
                stats.reasons[verdict] += 1
    return rows, stats
