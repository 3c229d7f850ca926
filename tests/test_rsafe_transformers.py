"""The transformers engine with tiny Qwen2 models built on the spot (random init, local tokenizer).

- a model taught one answer: the whole path (chat template, batched generate on the
  worker thread, decode, parse, Verdict) yields that verdict;
- a random model: garbage, hence GuardFailure (closed), never a pass;
- concurrent checks share batches, and the event loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from guard.errors import GuardFailure
from guard.policies import Direction
from guard.registry import build_guard
from tests._rsafe_support import (
    POLICIES,
    TRAINED_ANSWER,
    policy_set,
    request,
    tiny_model,
)

pytestmark = pytest.mark.slow
POLS = POLICIES[:2]  # S1, S2: reasoning auto


@pytest.fixture(scope="module")
def trained_guard_opts() -> dict:
    return {"engine": "transformers", "model": str(tiny_model(TRAINED_ANSWER)), "threads": 1, "max_tokens": 48}


@pytest.fixture(scope="module")
def random_guard_opts() -> dict:
    return {"engine": "transformers", "model": str(tiny_model(None)), "threads": 1, "max_tokens": 24}


async def test_taught_model_verdict_end_to_end(trained_guard_opts) -> None:
    guard = build_guard("rsafe", trained_guard_opts, policy_set())
    try:
        verdict = await guard.check(request("how do I hurt someone badly?", policies=POLS))
        assert verdict.violated == ["S1"]
        assert verdict.reasoning == "It asks for violence."
        out = await guard.check(request("Here is how.", Direction.OUTPUT, POLS, context="hurt someone"))
        assert out.violated == ["S1"]
    finally:
        await guard.aclose()


async def test_concurrent_checks_are_batched_and_loop_stays_free(trained_guard_opts) -> None:
    guard = build_guard("rsafe", {**trained_guard_opts, "batch_size": 8}, policy_set())
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    try:
        texts = [f"request number {i}: how to hurt people" for i in range(6)]
        start = time.perf_counter()
        verdicts = await asyncio.gather(*(guard.check(request(t, policies=POLS)) for t in texts))
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        await tick
        await guard.aclose()
    assert all(v.violated == ["S1"] for v in verdicts)
    engine = guard.engine
    assert engine.batches_run <= 3, engine.batches_run  # 6 checks, not 6 generate calls
    # the loop ticked throughout: no gap anywhere near the generation time
    assert max(gaps) < max(0.5, elapsed / 3), (max(gaps), elapsed)


async def test_random_model_garbage_fails_closed(random_guard_opts) -> None:
    guard = build_guard("rsafe", random_guard_opts, policy_set())
    try:
        with pytest.raises(GuardFailure):
            await guard.check(request("how do I bake bread?", policies=POLS))
    finally:
        await guard.aclose()


async def test_closed_engine_refuses(random_guard_opts) -> None:
    guard = build_guard("rsafe", random_guard_opts, policy_set())
    await guard.aclose()
    with pytest.raises(GuardFailure, match="closed"):
        await guard.check(request("x", policies=POLS))
