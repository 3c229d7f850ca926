"""Policy examples that count: `examples.unsafe` / `examples.safe` move a policy's score.

The head reads a policy's text (which already lists its examples), but a frozen idea of
"harmful" dominates what it learned, so a policy about something benign-looking
(competitor mentions, code requests) would barely move. This term adds, per policy that
has examples, a shift to the calibrated logit from the content's cosine similarity to
the policy's example embeddings (the same sentence embedding the head reads):

    shift = a * max_cos(content, unsafe examples) + b * max_cos(content, safe examples) * has_safe
            + c * has_safe + d            (policies with at least one unsafe example)
    shift = b * max_cos(content, safe examples) + c                (only safe examples)

a..d are fitted by `training/embedded_examples.py` on simulated policies (categories of
the training data and topic clusters of its benign rows, examples drawn from validation
rows, the scored texts kept apart from the examples) and ship in meta.json's `examples`.
Policies without examples are scored by the head alone (shift 0).

Use from the guard (see `EmbeddedGuard`):
    ex = await guard.examples.for_policies(policies, version, embed)  # ExampleSet or None
    logits = logits + ex.shift(windows[:, :DIM])                      # [W, P]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import torch

from guard.embedded.encoder import DIM
from guard.policies import Policy

Embed = Callable[[list[str]], Awaitable[list[torch.Tensor]]]  # texts -> [FEATURE_DIM] features (first window)


def example_space(feats: torch.Tensor, params: dict) -> torch.Tensor:
    """Where example similarity is measured. `space: mid` (the frozen middle-layer mean, centred on
    `mu` and normalized: the fine-tuned last layer packs every text close together, which blurs
    topics) or `last` (the sentence embedding the head reads)."""
    feats = feats.float()
    if params.get("space") == "mid" and feats.shape[-1] >= 2 * DIM:
        x = feats[:, DIM : 2 * DIM]
        if params.get("mu") is not None:
            x = x - torch.tensor(params["mu"], dtype=torch.float32)
        return torch.nn.functional.normalize(x, dim=-1)
    return torch.nn.functional.normalize(feats[:, :DIM], dim=-1)


class ExampleSet:
    """Example embeddings of one policy tuple, ready to score windows."""

    def __init__(self, unsafe: list[torch.Tensor | None], safe: list[torch.Tensor | None], params: dict) -> None:
        self.unsafe, self.safe, self.p = unsafe, safe, params

    def shift(self, windows: torch.Tensor) -> torch.Tensor:
        """[W, FEATURE_DIM] window features -> [W, P] additive logit shifts."""
        w = example_space(windows, self.p)
        out = torch.zeros(w.shape[0], len(self.unsafe))
        a, b, c, d = (float(self.p.get(k, 0.0)) for k in ("a", "b", "c", "d"))
        for j, (u, s) in enumerate(zip(self.unsafe, self.safe)):
            if u is None and s is None:
                continue
            ss = (w @ s.T).max(1).values if s is not None else torch.zeros(w.shape[0])
            hs = 1.0 if s is not None else 0.0
            if u is not None:
                su = (w @ u.T).max(1).values
                out[:, j] = a * su + b * ss * hs + c * hs + d
            else:
                out[:, j] = b * ss + c
        return out


class ExampleTerm:
    """Caches example embeddings (per example text) and builds ExampleSets per policy version."""

    def __init__(self, params: dict | None) -> None:
        self.params = dict(params or {})
        self._emb: dict[str, torch.Tensor] = {}
        self._by_version: dict[tuple, ExampleSet | None] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.params)

    async def for_policies(self, policies: tuple[Policy, ...], version: str, embed: Embed) -> ExampleSet | None:
        if not self.enabled:
            return None
        key = (version, tuple((p.id, tuple(p.examples.unsafe), tuple(p.examples.safe)) for p in policies))
        if key in self._by_version:
            return self._by_version[key]
        texts = list(dict.fromkeys(t for p in policies for t in (*p.examples.unsafe, *p.examples.safe) if t.strip()))
        missing = [t for t in texts if t not in self._emb]
        if missing:
            for t, e in zip(missing, await embed(missing)):
                self._emb[t] = example_space(e.reshape(1, -1), self.params)[0]

        def mat(ex) -> torch.Tensor | None:
            rows = [self._emb[t] for t in ex if t.strip()]
            return torch.stack(rows) if rows else None

        unsafe = [mat(p.examples.unsafe) for p in policies]
        safe = [mat(p.examples.safe) for p in policies]
        result = ExampleSet(unsafe, safe, self.params) if any(u is not None or s is not None for u, s in zip(unsafe, safe)) else None
        if len(self._by_version) > 64:
            self._by_version.clear()
        self._by_version[key] = result
        return result


def ranked(results: dict) -> dict:
    """PolicyResults ordered by score, highest first (so `Verdict.violated[0]` is the best match)."""
    return dict(sorted(results.items(), key=lambda kv: -kv[1].score))
