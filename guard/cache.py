"""A bounded LRU verdict cache in front of any guard.

Reasoning guards spend hundreds of tokens per verdict; chat traffic repeats
itself (retries, shared system-like user turns, the same output re-checked).
`CachedGuard` answers repeated content from memory.

The key is a hash of everything the verdict depends on:
- the normalized conversation (Unicode NFC, whitespace collapsed; every turn
  with its role, because the reasoning guard reads the context too),
- the direction,
- the policy-set version plus each judged policy's id and threshold (route
  overrides can change thresholds or the active set without changing the file),
- the backend's `cache_tag` (backend name, model, prompt template) or name.

Failures are never cached (the next check retries). Concurrent misses on the
same key share one inner check (single flight), so a burst of identical
requests costs one model call. Counters (`hits`, `misses`, `hit_rate`) are
plain attributes; the gateway exports them as metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
import unicodedata
from collections import OrderedDict

from guard.errors import GuardFailure
from guard.verdict import CheckRequest, Guard, Verdict

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def cache_key(request: CheckRequest, backend: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in (backend, request.direction.value, request.policy_version):
        h.update(part.encode())
        h.update(b"\x00")
    for p in request.policies:
        h.update(f"{p.id}\x01{p.threshold}\x01{p.reasoning}\x00".encode())
    h.update(b"\x02")
    for turn in request.conversation:
        h.update(turn.role.encode())
        h.update(b"\x01")
        h.update(normalize(turn.text).encode())
        h.update(b"\x00")
    return h.hexdigest()


class CachedGuard:
    """Wrap `inner` with an LRU of at most `size` verdicts."""

    def __init__(self, inner: Guard, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("cache size must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.size = size
        self.tag = getattr(inner, "cache_tag", None) or inner.name
        self._lru: OrderedDict[str, Verdict] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Verdict]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        self._lru.clear()

    async def check(self, request: CheckRequest) -> Verdict:
        start = time.perf_counter()
        key = cache_key(request, self.tag)
        found = self._lru.get(key)
        if found is not None:
            self._lru.move_to_end(key)
            self.hits += 1
            return dataclasses.replace(found, cached=True, latency_ms=(time.perf_counter() - start) * 1000)
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            verdict = await asyncio.shield(pending)
            return dataclasses.replace(verdict, cached=True)
        self.misses += 1
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            verdict = await self.inner.check(request)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # the leader was cancelled, not the waiters
                future.set_exception(GuardFailure("shared guard check was cancelled"))
            else:
                future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(verdict)
        self._lru[key] = dataclasses.replace(verdict, results=dict(verdict.results))
        if len(self._lru) > self.size:
            self._lru.popitem(last=False)
        return verdict

    async def aclose(self) -> None:
        await self.inner.aclose()


def wrap(guard: Guard, size: int | None) -> Guard:
    """`CachedGuard(guard, size)`, or the guard itself when the cache is off (size 0/None)."""
    return CachedGuard(guard, size) if size else guard


DEFAULT_SIZE = 4096


def build_cached(backend: str, options: dict, policies) -> Guard:
    """Build a guard through the registry, behind a verdict cache.

    `options.cache_size` (default 4096 verdicts; 0 turns the cache off) is read
    here and removed before the backend sees its options, so every backend gets
    a cache without knowing about it.
    """
    from guard.errors import GuardConfigError
    from guard.registry import build_guard

    opts = dict(options)
    size = opts.pop("cache_size", DEFAULT_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise GuardConfigError(f"guard option cache_size must be a whole number >= 0, not {size!r}")
    return wrap(build_guard(backend, opts, policies), size)
