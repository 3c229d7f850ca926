"""The `embedded` guard: frozen MiniLM features + a policy-conditioned head, on CPU.

One check = one encoder pass over the judged text (windowed if long; for output
checks the user turn it answers rides in the same pass as context), then the
head scores that text against every policy in force. Policy embeddings are
computed once per policy text and kept per policy-set version, so a policy the
user just wrote costs one extra encoder pass the first time it is seen.

Input checks judge each user/tool turn and take the maximum per policy, so a
harmful turn cannot hide behind benign ones. Empty judged text is "nothing to
judge" (score 0, not violated); text that cannot be encoded as UTF-8 (lone
surrogates) is repaired with replacement characters; text longer than the
guard reads is cut and the verdict says `truncated=True`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from guard.embedded.batcher import MicroBatcher
from guard.embedded.encoder import DIM, FEATURE_DIM, Encoder
from guard.embedded.head import HeadMeta, PolicyHead
from guard.errors import GuardFailure
from guard.policies import Direction, Policy
from guard.verdict import CheckRequest, PolicyResult, Verdict

POLICY_KEY = ("policy", 256, 1)


@dataclass(frozen=True)
class EmbeddedOptions:
    max_tokens: int = 128  # tokens per window (what the head was trained on)
    max_windows: int = 4  # windows per judged text; beyond that the verdict is truncated
    max_turns: int = 8  # input checks judge the last N user/tool turns
    max_batch: int = 32  # texts per forward pass
    max_wait_ms: float = 2.0  # how long the batcher waits for company
    threads: int = 2  # torch intra-op threads

    @classmethod
    def parse(cls, options: dict[str, Any], meta: HeadMeta) -> EmbeddedOptions:
        from guard.errors import GuardConfigError

        known = {k for k in cls.__dataclass_fields__}
        unknown = set(options) - known - {"weights"}
        if unknown:
            raise GuardConfigError(f"embedded guard: unknown options {sorted(unknown)}; known: {sorted(known | {'weights'})}")
        values = {"max_tokens": meta.max_tokens, **{k: v for k, v in options.items() if k in known}}
        try:
            parsed = cls(**{k: type(getattr(cls, k))(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise GuardConfigError(f"embedded guard: bad option value: {exc}") from exc
        if not (8 <= parsed.max_tokens <= 512 and parsed.max_windows >= 1 and parsed.max_turns >= 1 and parsed.max_batch >= 1):
            raise GuardConfigError("embedded guard: max_tokens must be 8..512; max_windows, max_turns, max_batch >= 1")
        return parsed


def clean_text(text: Any) -> str:
    """Whatever arrived, as text the tokenizer accepts (no crash on bad input)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")


class EmbeddedGuard:
    name = "embedded"

    def __init__(self, encoder: Encoder, head: PolicyHead, meta: HeadMeta, options: EmbeddedOptions) -> None:
        self.encoder = encoder
        self.head = head
        self.meta = meta
        self.options = options
        self.max_chars = options.max_tokens * options.max_windows * 12  # cheap cut before tokenizing
        self._policy_cache: dict[str, torch.Tensor] = {}  # policy text -> [DIM]
        self._by_version: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        self.batcher = MicroBatcher(self._forward, options.max_batch, options.max_wait_ms / 1000)

    def warm(self, policies: tuple[Policy, ...]) -> None:
        """Embed the configured policies at start-up (sync, before any check runs).

        Also runs the first forward pass, so the first real request does not pay for
        torch's lazy initialization.
        """
        texts = [p.text for p in policies if p.engine == "model" and p.text not in self._policy_cache]
        if texts:
            feats = self.encoder.embed(texts, max_tokens=POLICY_KEY[1])
            self._policy_cache.update({t: f[:DIM].clone() for t, f in zip(texts, feats)})
        self.encoder.embed(["warm-up"], max_tokens=self.options.max_tokens)

    # ---- worker-thread side -------------------------------------------------------------
    def _forward(self, texts: list[str], key) -> tuple[list[torch.Tensor], list[bool]]:
        _, max_tokens, max_windows = key
        with torch.inference_mode():
            enc = self.encoder.tokenize(texts, max_tokens=max_tokens, max_windows=max_windows)
            feats = self.encoder.features(enc)
        per_text: list[list[int]] = [[] for _ in texts]
        for row, owner in enumerate(enc.owner):
            per_text[owner].append(row)
        return [feats[rows] for rows in per_text], list(enc.truncated)

    def _score(self, content: list[torch.Tensor], context: torch.Tensor | None, policies: torch.Tensor) -> torch.Tensor:
        """Max over windows and turns of calibrated probabilities: -> [P]."""
        windows = torch.cat(content)
        n = windows.shape[0]
        ctx = context.expand(n, FEATURE_DIM) if context is not None else torch.zeros(n, FEATURE_DIM)
        has = torch.full((n,), 1.0 if context is not None else 0.0)
        with torch.inference_mode():
            logits = self.head.grid(windows, ctx, has, policies)
        probs = torch.sigmoid(logits / self.meta.temperature + self.meta.bias)
        return probs.max(0).values

    # ---- event-loop side ----------------------------------------------------------------
    async def policy_embeddings(self, policies: tuple[Policy, ...], version: str) -> torch.Tensor:
        key = (version, tuple(p.text for p in policies))
        cached = self._by_version.get(key)
        if cached is not None:
            return cached
        missing = [t for t in dict.fromkeys(key[1]) if t not in self._policy_cache]
        if missing:
            feats = await self.batcher.submit(missing, POLICY_KEY, lambda f, _t: [x[0, :DIM].clone() for x in f])
            self._policy_cache.update(zip(missing, feats))
        stacked = torch.stack([self._policy_cache[t] for t in key[1]])
        if len(self._by_version) > 64:
            self._by_version.clear()
        self._by_version[key] = stacked
        return stacked

    async def check(self, request: CheckRequest) -> Verdict:
        started = time.perf_counter()
        policies = tuple(p for p in request.policies if p.engine == "model")
        verdict = Verdict(backend=self.name, decided_by=self.name)
        if not policies:
            return verdict
        direction = request.direction
        judged = [clean_text(t.text) for t in request.judged]
        truncated = False
        if direction is Direction.INPUT and len(judged) > self.options.max_turns:
            judged, truncated = judged[-self.options.max_turns :], True
        cut = []
        for text in judged:
            if len(text) > self.max_chars:
                text, truncated = text[: self.max_chars], True
            cut.append(text)
        texts = [t for t in cut if t.strip()]
        threshold = self.meta.thresholds.get(direction.value, 0.5)
        if not texts:  # nothing to judge: not a violation, and say so with score 0
            verdict.results = {p.id: PolicyResult(p.id, False, 0.0) for p in policies}
            verdict.latency_ms = (time.perf_counter() - started) * 1000
            return verdict
        context = clean_text(request.context)[: self.options.max_tokens * 8] if direction is Direction.OUTPUT else ""
        try:
            pol = await self.policy_embeddings(policies, request.policy_version)
            n_content = len(texts)

            def finish(feats: list[torch.Tensor], cut_flags: list[bool]):
                ctx = feats[n_content][:1] if context.strip() else None
                return self._score(feats[:n_content], ctx, pol), any(cut_flags[:n_content])

            batch = texts + ([context] if context.strip() else [])
            key = ("content", self.options.max_tokens, self.options.max_windows)
            probs, windows_cut = await self.batcher.submit(batch, key, finish)
        except GuardFailure:
            raise
        except Exception as exc:
            raise GuardFailure(f"embedded guard failed: {type(exc).__name__}: {exc}") from exc
        results = {}
        for policy, prob in zip(policies, probs.tolist()):
            limit = policy.threshold if policy.threshold is not None else threshold
            results[policy.id] = PolicyResult(policy.id, prob >= limit, round(prob, 4))
        verdict.results = results
        verdict.truncated = truncated or windows_cut
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict

    async def aclose(self) -> None:
        self.batcher.close()
