"""The micro-batcher on its own: batching, key separation, errors, shutdown (no model needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from guard.embedded.batcher import MicroBatcher


def fake_run(calls: list[list[str]], delay: float = 0.0):
    def run(texts, key):
        calls.append(list(texts))
        if delay:
            time.sleep(delay)
        assert threading.current_thread().name == "embedded-guard"  # never the event loop's thread
        return [torch.tensor([[float(len(t))]]) for t in texts], [False] * len(texts)

    return run


async def test_concurrent_jobs_share_a_forward_pass():
    calls: list[list[str]] = []
    b = MicroBatcher(fake_run(calls, delay=0.02), max_batch=64, max_wait_s=0.01)
    try:
        texts = [f"text {'x' * i}" for i in range(20)]
        results = await asyncio.gather(*(b.submit([t], "k", lambda f, _c: float(f[0][0, 0])) for t in texts))
        assert results == [float(len(t)) for t in texts]  # each caller gets its own row back
        assert b.batches < len(texts)
        assert b.largest_batch > 1
    finally:
        b.close()


async def test_max_batch_caps_a_forward_pass():
    calls: list[list[str]] = []
    b = MicroBatcher(fake_run(calls, delay=0.01), max_batch=4, max_wait_s=0.02)
    try:
        await asyncio.gather(*(b.submit([str(i)], "k", lambda f, _c: None) for i in range(16)))
        assert max(len(c) for c in calls) <= 4
    finally:
        b.close()


async def test_different_keys_never_share_a_batch():
    calls: list[list[str]] = []
    b = MicroBatcher(fake_run(calls, delay=0.01), max_batch=64, max_wait_s=0.02)
    try:
        jobs = [b.submit([f"{k}-{i}"], k, lambda f, _c: None) for i in range(6) for k in ("a", "b")]
        await asyncio.gather(*jobs)
        for batch in calls:
            assert len({t.split("-")[0] for t in batch}) == 1
    finally:
        b.close()


async def test_a_failing_forward_pass_reaches_every_waiter():
    def boom(texts, key):
        raise ValueError("model exploded")

    b = MicroBatcher(boom, max_wait_s=0.005)
    try:
        results = await asyncio.gather(*(b.submit(["x"], "k", lambda f, _c: None) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        # the worker survives a failure
        b._run = fake_run([])
        assert await b.submit(["abc"], "k", lambda f, _c: float(f[0][0, 0])) == 3.0
    finally:
        b.close()


async def test_a_failing_finish_only_fails_its_own_job():
    b = MicroBatcher(fake_run([], delay=0.01), max_wait_s=0.02)
    try:
        def bad(f, _c):
            raise KeyError("nope")

        ok, err = await asyncio.gather(b.submit(["a"], "k", lambda f, _c: "fine"), b.submit(["b"], "k", bad), return_exceptions=True)
        assert ok == "fine" and isinstance(err, KeyError)
    finally:
        b.close()


async def test_closed_batcher_refuses_work():
    b = MicroBatcher(fake_run([]))
    b.close()
    with pytest.raises(RuntimeError):
        await b.submit(["x"], "k", lambda f, _c: None)
