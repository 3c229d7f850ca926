"""The `embedded` guard: MiniLM features + a policy-conditioned head, on CPU.

One check reads every judged turn whole: each turn is cut into overlapping
windows of `max_tokens` tokens and all windows go through the encoder (for
output checks the user turn it answers rides along as context). The head then
scores every window against every policy in force; a policy's score is the
maximum over windows and turns, so harm cannot hide behind benign text before,
after or around it.

What keeps that cheap:
- a per-turn feature cache (an LRU keyed by the turn's text): a conversation pays
  only for turns it has not sent before; the reply the gateway judged on the way
  out is already cached when the client sends it back as history;
- the micro-batcher (concurrent checks share forward passes on one worker
  thread, never the event loop's), padding-free length groups and bf16 where the
  CPU has it (`guard/embedded/encoder.py`);
- policy embeddings computed once per policy text.

Limits: a check reads at most `max_chars` characters of judged text (128 Ki by
default; the cost per 1,000 characters is in docs/benchmarks.md). Past that the verdict says
`truncated=True` and the pipeline applies each policy's failure mode (closed by
default): text that is not read is never passed as safe. Empty judged text is
"nothing to judge" (score 0); text that cannot be encoded as UTF-8 is repaired
with replacement characters.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from guard.embedded.batcher import MicroBatcher
from guard.embedded.encoder import DIM, FEATURE_DIM, Encoder
from guard.embedded.examples import NO_MATCH, ExampleSet, ExampleTerm, matched_score, ranked
from guard.embedded.head import HeadMeta, PolicyHead
from guard.errors import GuardFailure
from guard.policies import Direction, Policy
from guard.verdict import CheckRequest, PolicyResult, Verdict

POLICY_KEY = ("policy", 256, 1)  # policy texts: one long window each
CONTEXT_CHARS = 4096  # an output check's context: its first window is what the head reads


class EmbeddedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str | None = None  # a directory with head.safetensors + meta.json (default: shipped)
    max_tokens: int | None = Field(default=None, ge=8, le=512)  # tokens per window (default: what the head was trained on)
    max_chars: int = Field(default=131_072, ge=1)  # judged characters read per check; past it: truncated
    max_batch: int = Field(default=32, ge=1)  # windows-bearing texts per forward batch
    max_wait_ms: float = Field(default=0.0, ge=0)  # extra wait for company; 0: jobs that queue while a pass runs share the next
    threads: int = Field(default=2, ge=1)  # torch intra-op threads
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the CPU has it natively
    turn_cache: int = Field(default=50_000, ge=0)  # window features kept for turns seen before
    sentences: bool = True  # also read each sentence of a many-sentence turn on its own...
    # ...when the turn is longer than this many tokens. 0 (default): every many-sentence turn. 64 (the window
    # the head was trained on) makes a short message ~1.7x faster and flags fewer short safe texts, but lets
    # a harmful request wrapped in a short carrier task through (docs/models/embedded.md "Sentences").
    sentences_over: int = Field(default=0, ge=0)
    payloads: bool = True  # also read the content a writing request asks for on its own (payloads.py)


def clean_text(text: Any) -> str:
    """Whatever arrived, as text the tokenizer accepts (no crash on bad input)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")


class TurnCache:
    """Window features per turn text, least recently used out first, bounded in windows.

    Only the event loop's thread touches it (lookups before a check is submitted,
    inserts after its result is back)."""

    def __init__(self, max_windows: int) -> None:
        self.max_windows = max_windows
        self._items: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.windows = 0
        self.hits = self.misses = 0

    @staticmethod
    def key(kind: str, text: str) -> bytes:
        return hashlib.blake2b(f"{kind}\x00{text}".encode(), digest_size=16).digest()

    def get(self, key: bytes) -> torch.Tensor | None:
        feats = self._items.get(key)
        if feats is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return feats

    def put(self, key: bytes, feats: torch.Tensor) -> None:
        if self.max_windows <= 0 or feats.shape[0] > self.max_windows or key in self._items:
            return
        self._items[key] = feats
        self.windows += feats.shape[0]
        while self.windows > self.max_windows:
            _, old = self._items.popitem(last=False)
            self.windows -= old.shape[0]


def policy_key(policies: tuple[Policy, ...], version: str) -> bytes:
    """What a turn's scores depend on besides the turn: the policies' texts and examples."""
    spec = repr((version, [(p.id, p.text, p.examples) for p in policies]))
    return hashlib.blake2b(spec.encode(), digest_size=16).digest()


def read_budget(texts: list[str], max_chars: int) -> tuple[list[str], bool]:
    """The judged texts that fit in `max_chars` (later turns first: the newest matter most),
    and whether anything was left unread."""
    kept: list[str] = []
    left = max_chars
    for text in reversed(texts):
        if left <= 0:
            return kept[::-1], True
        if len(text) > left:
            kept.append(text[:left])
            return kept[::-1], True
        kept.append(text)
        left -= len(text)
    return kept[::-1], False


class EmbeddedGuard:
    name = "embedded"

    def __init__(self, encoder: Encoder, head: PolicyHead, meta: HeadMeta, options: EmbeddedOptions,
                 bank: torch.Tensor | None = None) -> None:
        self.encoder = encoder
        self.head = head
        self.meta = meta
        self.options = options
        self.max_tokens = options.max_tokens or meta.max_tokens
        self._policy_cache: dict[str, torch.Tensor] = {}  # policy text -> [DIM]
        self._by_version: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        self.turns = TurnCache(options.turn_cache)
        self.scores = TurnCache(options.turn_cache)  # per (turn, policy set): the turn's scores, one row each
        self.examples = ExampleTerm(meta.examples, bank)  # a text near a policy's unsafe examples violates it (examples.py)
        self.batcher = MicroBatcher(self._forward, options.max_batch, options.max_wait_ms / 1000)

    def warm(self, policies: tuple[Policy, ...]) -> None:
        """Embed the configured policies and their examples at start-up (sync, before any check
        runs). Those passes are also the first forward passes, so the first real request does
        not pay for torch's lazy initialization.
        """
        model = [p for p in policies if p.engine == "model"]
        texts = [p.text for p in model if p.text not in self._policy_cache]
        examples = self.examples.missing(tuple(model))
        if texts or examples:  # one set of passes for both: they are read the same way (POLICY_KEY)
            feats = self.encoder.embed(texts + examples, max_tokens=POLICY_KEY[1])
            self._policy_cache.update({t: f[:DIM].clone() for t, f in zip(texts, feats)})
            for t, f in zip(examples, feats[len(texts):]):
                self.examples.remember(t, f)
        else:  # nothing to embed: one pass anyway, for torch's lazy initialization
            self.encoder.embed(["warm-up"], max_tokens=self.max_tokens)

    # ---- worker-thread side -------------------------------------------------------------
    def _forward(self, texts: list[str], key) -> tuple[list[torch.Tensor], list[bool]]:
        kind, max_tokens, max_windows = key
        if not texts:
            return [], []
        with torch.inference_mode():
            enc = self.encoder.tokenize(
                texts, max_tokens=max_tokens, max_windows=max_windows, sentences=kind == "content" and self.options.sentences,
                sentences_over=self.options.sentences_over, payloads=kind == "content" and self.options.payloads,
            )
            feats = self.encoder.features(enc)
        per_text: list[list[int]] = [[] for _ in texts]
        for row, owner in enumerate(enc.owner):
            per_text[owner].append(row)
        return [feats[rows] for rows in per_text], list(enc.truncated)

    def _score(self, content: list[torch.Tensor], context: torch.Tensor | None, policies: torch.Tensor,
               ex: ExampleSet | None = None) -> torch.Tensor:
        """Per text, the max over its windows of calibrated probabilities and of example-match
        margins (examples.py; NO_MATCH without examples): -> [texts, 2, P]."""
        windows = torch.cat(content)
        n = windows.shape[0]
        ctx = context.expand(n, FEATURE_DIM) if context is not None else torch.zeros(n, FEATURE_DIM)
        has = torch.full((n,), 1.0 if context is not None else 0.0)
        with torch.inference_mode():  # in slices, so a long text never builds one huge pair matrix
            logits = torch.cat([self.head.serve_grid(windows[k : k + 256], ctx[k : k + 256], has[k : k + 256], policies)
                                for k in range(0, n, 256)])
        probs = torch.sigmoid(logits / self.meta.temperature + self.meta.bias)
        margins = torch.full_like(probs, NO_MATCH)
        if ex is not None:
            margins, head_counts = ex.score(windows)
            probs = probs * head_counts  # an example-defined policy's head verdict counts on its topic only
        both = torch.stack([probs, margins], dim=1)  # [W, 2, P]
        return torch.stack([part.max(0).values for part in both.split([c.shape[0] for c in content])])

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
        judged = [t for t in (clean_text(t.text) for t in request.judged) if t.strip()]
        texts, truncated = read_budget(judged, self.options.max_chars)
        if not texts:  # nothing to judge: not a violation, and say so with score 0
            verdict.results = {p.id: PolicyResult(p.id, False, 0.0) for p in policies}
            verdict.truncated = truncated
            verdict.latency_ms = (time.perf_counter() - started) * 1000
            return verdict
        context = clean_text(request.context) if direction is Direction.OUTPUT else ""
        try:
            pol = await self.policy_embeddings(policies, request.policy_version)
            ex = await self.examples.for_policies(policies, request.policy_version, self._embed_examples)
            probs = await self._probs(texts, context if context.strip() else None, pol, ex, policy_key(policies, request.policy_version))
        except GuardFailure:
            raise
        except Exception as exc:
            raise GuardFailure(f"embedded guard failed: {type(exc).__name__}: {exc}") from exc
        threshold = self.meta.thresholds.get(direction.value, 0.5)
        results = {}
        for policy, prob, margin in zip(policies, *probs.tolist()):
            limit = policy.threshold if policy.threshold is not None else threshold
            matched = margin >= 0 and limit < 1.0  # threshold 1.0 turns the policy's scores off, examples too
            results[policy.id] = PolicyResult(policy.id, prob >= limit or matched,
                                              round(matched_score(prob, margin if matched else NO_MATCH, limit), 4))
        verdict.results = ranked(results)  # highest score first: violated[0] is the best match
        verdict.truncated = truncated
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict

    async def _embed_examples(self, texts: list[str]) -> list[torch.Tensor]:
        return await self.batcher.submit(texts, POLICY_KEY, lambda f, _t: [x[0].clone() for x in f])

    async def _probs(self, texts: list[str], context: str | None, pol: torch.Tensor, ex: ExampleSet | None = None,
                     pol_key: bytes = b"") -> torch.Tensor:
        """Per-policy probabilities and example margins ([2, P]), the max over turns. Only turns missing from the cache go
        through the encoder; on input (no context) a turn's scores are cached too, so the
        head only scores turns it has not seen under these policies."""
        keys = [TurnCache.key("turn", t) for t in texts]
        scored: list[torch.Tensor | None] = [None] * len(texts)
        if context is None and pol_key:
            scored = [self.scores.get(k + pol_key) for k in keys]
            if all(x is not None for x in scored):
                return torch.stack(scored).max(0).values  # type: ignore[arg-type]
        todo = [i for i, x in enumerate(scored) if x is None]  # texts the head must score
        enc_texts, enc_keys = [texts[i] for i in todo], [keys[i] for i in todo]
        if context is not None:
            # the user turn judged on the way in already holds the context's first window
            whole = self.turns.get(TurnCache.key("turn", context))
            enc_texts, enc_keys = [*enc_texts, context[:CONTEXT_CHARS]], [*enc_keys, TurnCache.key("ctx", context)]
        have = [self.turns.get(k) for k in enc_keys]
        if context is not None and have[-1] is None and whole is not None:
            have[-1] = whole[:1]
        missing = [i for i, f in enumerate(have) if f is None]
        n_content = len(todo)

        def finish(feats: list[torch.Tensor], _cut: list[bool]) -> tuple[torch.Tensor, list[torch.Tensor]]:
            full = list(have)
            for i, f in zip(missing, feats):
                full[i] = f
            ctx = full[n_content][:1] if context is not None else None
            return self._score(full[:n_content], ctx, pol, ex), feats  # type: ignore[arg-type]

        key = ("content", self.max_tokens, None)
        probs, new = await self.batcher.submit([enc_texts[i] for i in missing], key, finish)
        for i, feats in zip(missing, new):
            self.turns.put(enc_keys[i], feats[:1] if i >= n_content else feats)
        for j, i in enumerate(todo):
            scored[i] = probs[j]
            if context is None and pol_key:
                self.scores.put(keys[i] + pol_key, probs[j])
        return torch.stack(scored).max(0).values  # type: ignore[arg-type]

    async def aclose(self) -> None:
        self.batcher.close()
