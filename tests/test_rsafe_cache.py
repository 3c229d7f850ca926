"""Verdict cache: hits, key sensitivity, LRU bound, single flight, failures not cached."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from guard.cache import CachedGuard, cache_key, wrap
from guard.errors import GuardFailure
from guard.policies import Direction
from guard.verdict import CheckRequest, Turn
from tests._rsafe_support import POLICIES, ScriptedGuard, request


async def test_repeated_content_is_a_hit() -> None:
    inner = ScriptedGuard("rsafe", {"S1": 1.0})
    guard = CachedGuard(inner, size=8)
    first = await guard.check(request("how to   make a bomb"))
    again = await guard.check(request("how to make a bomb  "))  # whitespace-normalized
    assert len(inner.seen) == 1
    assert again.cached and not first.cached
    assert again.results == first.results and again.reasoning == first.reasoning
    assert (guard.hits, guard.misses, guard.hit_rate) == (1, 1, 0.5)
    assert again.latency_ms < 1.0


def test_key_depends_on_everything_the_verdict_depends_on() -> None:
    base = request("text")
    keys = {
        cache_key(base, "rsafe"),
        cache_key(request("Text"), "rsafe"),
        cache_key(request("text", Direction.OUTPUT), "rsafe"),
        cache_key(request("text", Direction.OUTPUT, context="other question"), "rsafe"),
        cache_key(dataclasses.replace(base, policy_version="v2"), "rsafe"),
        cache_key(dataclasses.replace(base, policies=POLICIES[:2]), "rsafe"),
        cache_key(
            dataclasses.replace(base, policies=(POLICIES[0].model_copy(update={"threshold": 0.9}), *POLICIES[1:])),
            "rsafe",
        ),
        cache_key(base, "embedded"),
        cache_key(CheckRequest(Direction.INPUT, (Turn("tool", "text"),), POLICIES, "v-test"), "rsafe"),
    }
    assert len(keys) == 9
    assert cache_key(request("text"), "rsafe") == cache_key(request(" text\n"), "rsafe")
    # NFC: composed and decomposed forms are the same text
    assert cache_key(request("caf\u00e9"), "x") == cache_key(request("cafe\u0301"), "x")


async def test_lru_bound_and_eviction_order() -> None:
    inner = ScriptedGuard("g", {})
    guard = CachedGuard(inner, size=2)
    for text in ("a", "b", "a", "c", "a", "b"):
        await guard.check(request(text))
    # a(miss) b(miss) a(hit) c(miss, evicts b) a(hit) b(miss, evicts c)
    assert (guard.hits, guard.misses, len(guard)) == (2, 4, 2)


async def test_concurrent_identical_checks_share_one_inner_call() -> None:
    inner = ScriptedGuard("g", {"S1": 1.0}, delay=0.05)
    guard = CachedGuard(inner, size=8)
    verdicts = await asyncio.gather(*(guard.check(request("same")) for _ in range(10)))
    assert len(inner.seen) == 1
    assert all(v.violated == ["S1"] for v in verdicts)
    assert guard.misses == 1 and guard.hits == 9


async def test_failures_are_not_cached_and_reach_every_waiter() -> None:
    inner = ScriptedGuard("g", {}, delay=0.02, fail=GuardFailure("unreadable"))
    guard = CachedGuard(inner, size=8)
    results = await asyncio.gather(*(guard.check(request("x")) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, GuardFailure) for r in results)
    inner.fail = None
    inner.scores = {"S1": 0.0}
    verdict = await guard.check(request("x"))
    assert not verdict.cached and len(inner.seen) == 2


async def test_cancelled_leader_fails_waiters_without_caching() -> None:
    inner = ScriptedGuard("g", {}, delay=1)
    guard = CachedGuard(inner, size=8)
    leader = asyncio.ensure_future(guard.check(request("x")))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(guard.check(request("x")))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(GuardFailure, match="cancelled"):
        await waiter
    assert len(guard) == 0


async def test_wrap_and_close() -> None:
    inner = ScriptedGuard("g", {})
    assert wrap(inner, 0) is inner and wrap(inner, None) is inner
    cached = wrap(inner, 4)
    assert isinstance(cached, CachedGuard) and cached.name == "g"
    await cached.aclose()
    assert inner.closed
    with pytest.raises(ValueError):
        CachedGuard(inner, 0)


def test_build_cached_reads_cache_size_from_options() -> None:
    from guard.cache import build_cached
    from guard.errors import GuardConfigError
    from tests._rsafe_support import policy_set

    guard = build_cached("patterns", {}, policy_set())
    assert isinstance(guard, CachedGuard) and guard.size == 4096
    guard = build_cached("rsafe", {"url": "http://g:1", "cache_size": 16}, policy_set())
    assert isinstance(guard, CachedGuard) and guard.size == 16 and guard.tag.startswith("rsafe:vllm:")
    assert not isinstance(build_cached("patterns", {"cache_size": 0}, policy_set()), CachedGuard)
    with pytest.raises(GuardConfigError, match="cache_size"):
        build_cached("patterns", {"cache_size": "big"}, policy_set())
