"""Policy examples that count: a text close to one of a policy's `examples.unsafe` violates it.

The head reads a policy's text, but what it learned of "harmful" dominates, so a policy
about something benign-looking (competitor mentions, code requests, investment advice)
barely moves it. This rule works beside the head, in the encoder's sentence-embedding
space (all-MiniLM-L6-v2's mean-pooled, normalized last layer: the space that model was
trained for, where near-paraphrases sit close together):

    match(x, policy)  iff  su >= tau  and  su >= ss
    su  = max cosine of x to the policy's unsafe examples
    ss  = max cosine of x to its safe examples (-1 when it has none)
    tau = max(floor, quantile_q of su over a bank of everyday benign texts)

(the bank less the clusters the examples are ordinary members of, when the weights set
`exclude_topic`: see `Bank.off_topic`), so each policy gets its own threshold: one whose examples look like everyday requests
("Can you write a function that...") needs a closer match than one about a rare topic, and
on benign traffic like the bank a policy matches about (1 - q) of texts at most. A text
nearer a safe example than every unsafe one never matches. A matched policy is violated
whatever the head says; an unmatched one is left to the head, with one gate: for a policy
with at least `gate_min_examples` unsafe examples (one its examples define), the head's
verdict counts only on text that is on the examples' topic (su at or above the bank's
`gate` quantile); elsewhere its score is 0.
And where a text matches one of the policy's safe examples (the same rule, with the safe
examples' own threshold) more closely than any unsafe one, the head does not count either:
what the policy's author wrote down as allowed is allowed.

`q`, `floor`, `gate` and the bank ship in the weights folder (meta.json `examples`, and
`bank.safetensors`: base-space embeddings of benign training prompts), written by
`python -m training.embedded.examples`, which picks `q`, `floor` and `gate` on simulated
policies drawn from the training data (never from bench/ or the benchmarks' texts).
The rule needs the base encoder's last layer: weights with a fine-tuned overlay do not
enable it (their last layer is not the sentence-embedding space any more).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from guard.embedded.encoder import DIM
from guard.policies import Policy

Embed = Callable[[list[str]], Awaitable[list[torch.Tensor]]]  # texts -> [FEATURE_DIM] features (first window)
BANK_FILE = "bank.safetensors"
NO_MATCH = -1.0  # the margin of a policy that cannot match (no unsafe examples, or nearer a safe one)


def sentence_space(feats: torch.Tensor) -> torch.Tensor:
    """[N, FEATURE_DIM] features -> [N, DIM] unit sentence embeddings."""
    return torch.nn.functional.normalize(feats[:, :DIM].float(), dim=-1)


TYPICAL_LEVELS = (0.25, 0.5, 0.75)  # quantiles of a bank cluster's member-to-centroid cosine that ship


@dataclass(frozen=True)
class Bank:
    """Everyday benign texts in the sentence space, clustered by topic.

    `texts` [N, DIM]; `centroids` [K, DIM] and `assign` [N] (k-means of the bank); `typical`
    [K, len(TYPICAL_LEVELS)]: how close a cluster's own members sit to its centroid. Weights
    written before the clusters shipped have `centroids` None (no topic exclusion)."""

    texts: torch.Tensor
    centroids: torch.Tensor | None = None
    assign: torch.Tensor | None = None
    typical: torch.Tensor | None = None

    def off_topic(self, examples: torch.Tensor, level: float | None) -> torch.Tensor:
        """The bank less the clusters `examples` are ordinary members of (an example at least as
        close to its nearest centroid as the `level` quantile of that cluster's members): a policy
        against code requests is not calibrated on the everyday code requests it forbids."""
        if level is None or self.centroids is None or self.assign is None or self.typical is None:
            return self.texts
        cos = examples @ self.centroids.T
        best = cos.argmax(1)
        bar = self.typical[best, TYPICAL_LEVELS.index(level)]
        drop = best[cos.gather(1, best[:, None])[:, 0] >= bar].unique()
        keep = ~torch.isin(self.assign, drop)
        return self.texts[keep] if int(keep.sum()) >= len(self.texts) // 4 else self.texts


def load_bank(weights: Path) -> Bank:
    from safetensors.torch import load_file

    t = load_file(str(weights / BANK_FILE))
    if "centroids" not in t:
        return Bank(t["bank"].float())
    return Bank(t["bank"].float(), t["centroids"].float(), t["assign"].long(), t["typical"].float())


def policy_threshold(examples: torch.Tensor, bank: Bank, quantile: float, floor: float, level: float | None = None) -> float:
    """The closeness to its examples a text needs to match them: the `quantile` of that closeness over
    the bank's everyday texts off the examples' own topic (`Bank.off_topic`), and at least `floor`."""
    ref = bank.off_topic(examples, level)
    return max(floor, float(torch.quantile((ref @ examples.T).max(1).values, quantile)))


class ExampleSet:
    """Example embeddings and thresholds of one policy tuple, ready to score windows."""

    def __init__(self, unsafe: list[torch.Tensor | None], safe: list[torch.Tensor | None], tau: list[float],
                 gate: list[float | None], tau_safe: list[float] | None = None) -> None:
        self.unsafe, self.safe, self.tau, self.gate = unsafe, safe, tau, gate
        self.tau_safe = tau_safe or [1.0] * len(safe)

    def score(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[W, FEATURE_DIM] window features -> ([W, P] margins: su - tau where the window matches
        the policy's examples (>= 0), NO_MATCH where it cannot; [W, P] bool: where the head's
        verdict counts)."""
        w = sentence_space(windows)
        margins = torch.full((w.shape[0], len(self.unsafe)), NO_MATCH)
        head_counts = torch.ones(w.shape[0], len(self.unsafe), dtype=torch.bool)
        for j, (u, s) in enumerate(zip(self.unsafe, self.safe)):
            su = (w @ u.T).max(1).values if u is not None else torch.full((w.shape[0],), -1.0)
            ss = (w @ s.T).max(1).values if s is not None else torch.full((w.shape[0],), -1.0)
            head_counts[:, j] = ~((ss > su) & (ss >= self.tau_safe[j]))  # matches a safe example: allowed
            if u is None:
                continue
            nearer_unsafe = su >= ss
            margins[:, j] = torch.where(nearer_unsafe, su - self.tau[j], torch.full_like(su, NO_MATCH)).clamp(min=NO_MATCH)
            if self.gate[j] is not None:
                head_counts[:, j] &= su >= self.gate[j]
        return margins, head_counts


class ExampleTerm:
    """Caches example embeddings (per example text) and builds ExampleSets per policy version."""

    def __init__(self, params: dict | None, bank: Bank | None) -> None:
        self.params = dict(params or {})
        self.bank = bank
        self._emb: dict[str, torch.Tensor] = {}
        self._by_version: dict[tuple, ExampleSet | None] = {}

    @property
    def enabled(self) -> bool:
        return self.bank is not None and self.params.get("rule") == "nearest"

    def remember(self, text: str, feats: torch.Tensor) -> None:
        self._emb[text] = sentence_space(feats.reshape(1, -1))[0]

    def missing(self, policies: tuple[Policy, ...]) -> list[str]:
        if not self.enabled:
            return []
        texts = (t for p in policies for t in (*p.examples.unsafe, *p.examples.safe) if t.strip())
        return [t for t in dict.fromkeys(texts) if t not in self._emb]

    async def for_policies(self, policies: tuple[Policy, ...], version: str, embed: Embed) -> ExampleSet | None:
        if not self.enabled:
            return None
        key = (version, tuple((p.id, tuple(p.examples.unsafe), tuple(p.examples.safe)) for p in policies))
        if key in self._by_version:
            return self._by_version[key]
        missing = self.missing(policies)
        if missing:
            for t, e in zip(missing, await embed(missing)):
                self.remember(t, e)

        def mat(ex) -> torch.Tensor | None:
            rows = [self._emb[t] for t in ex if t.strip()]
            return torch.stack(rows) if rows else None

        unsafe = [mat(p.examples.unsafe) for p in policies]
        safe = [mat(p.examples.safe) for p in policies]
        q, floor, lv = float(self.params["quantile"]), float(self.params["floor"]), self.params.get("exclude_topic")
        gate_q, gate_min = self.params.get("gate"), int(self.params.get("gate_min_examples", 3))
        assert self.bank is not None
        tau = [policy_threshold(u, self.bank, q, floor, lv) if u is not None else 1.0 for u in unsafe]
        gate = [policy_threshold(u, self.bank, float(gate_q), -1.0, lv) if u is not None and gate_q is not None
                and len(u) >= gate_min else None for u in unsafe]
        tau_safe = [policy_threshold(s, self.bank, q, floor, lv) if s is not None else 1.0 for s in safe]
        has_any = any(u is not None or s is not None for u, s in zip(unsafe, safe))
        result = ExampleSet(unsafe, safe, tau, gate, tau_safe) if has_any else None
        if len(self._by_version) > 64:
            self._by_version.clear()
        self._by_version[key] = result
        return result


def matched_score(prob: float, margin: float, limit: float) -> float:
    """A policy's reported score: the head's probability, or, where the examples matched,
    at least halfway between the threshold and 1 (closer to 1 the closer the match)."""
    if margin < 0:
        return prob
    return max(prob, limit + (1 - limit) * (0.5 + 0.5 * min(1.0, margin * 10)))


def ranked(results: dict) -> dict:
    """PolicyResults ordered by score, highest first (so `Verdict.violated[0]` is the best match)."""
    return dict(sorted(results.items(), key=lambda kv: -kv[1].score))
