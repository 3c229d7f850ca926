"""A micro-batcher: concurrent checks share one encoder forward pass, off the event loop.

Why: the encoder costs about the same for 1 text as for 8 short ones on a CPU
(matrix multiplies amortize), so jobs that queue up while a forward pass runs
share the next one (continuous batching: under load the queue fills by itself,
and a lone job at low load runs at once instead of waiting for company; an extra
wait, `max_wait_s`, can be set but defaults to none in the guard). The model runs on one worker thread; the
event loop only enqueues and awaits a future. Jobs with different settings
(e.g. policy texts embedded with a longer window) never share a batch.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

_STOP = object()


@dataclass
class Job:
    texts: list[str]
    key: Hashable  # jobs batch together only when their keys are equal
    finish: Callable[[list[torch.Tensor], list[bool]], Any]  # runs on the worker with per-text window features
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects jobs for up to `max_wait_s` (or `max_batch` texts) and runs them together."""

    def __init__(self, run: Callable[[list[str], Hashable], tuple[list[torch.Tensor], list[bool]]], max_batch: int = 32, max_wait_s: float = 0.002) -> None:
        self._run = run  # texts, key -> (per-text [windows, F] features, per-text truncated)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._held: collections.deque[Job] = collections.deque()
        self._thread = threading.Thread(target=self._work, name="embedded-guard", daemon=True)
        self._closed = False
        self.batches = 0  # observability (and tests): how many forward passes ran
        self.largest_batch = 0
        self._thread.start()

    async def submit(self, texts: list[str], key: Hashable, finish: Callable[[list[torch.Tensor], list[bool]], Any]) -> Any:
        if self._closed:
            raise RuntimeError("the embedded guard is closed")
        loop = asyncio.get_running_loop()
        job = Job(texts, key, finish, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout=5)

    def _next(self, timeout: float | None) -> Any:
        if self._held:
            return self._held.popleft()
        try:
            return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _work(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            first = self._next(None)
            if first is _STOP:
                return
            batch, size = [first], len(first.texts)
            deadline = time.perf_counter() + self.max_wait_s
            later: list[Job] = []
            stop = False
            while size < self.max_batch:
                job = self._next(deadline - time.perf_counter())
                if job is None:
                    break
                if job is _STOP:
                    stop = True
                    break
                if job.key == first.key:
                    batch.append(job)
                    size += len(job.texts)
                else:
                    later.append(job)
            self._held.extend(later)
            self._execute(batch)
            if stop:
                self._fail_pending()
                return

    def _execute(self, batch: list[Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(texts))
        try:
            feats, truncated = self._run(texts, batch[0].key)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
            for job in batch:
                _resolve(job, exc=exc)
            return
        pos = 0
        for job in batch:
            n = len(job.texts)
            try:
                result = job.finish(feats[pos : pos + n], truncated[pos : pos + n])
            except BaseException as exc:  # noqa: BLE001
                _resolve(job, exc=exc)
            else:
                _resolve(job, result=result)
            pos += n

    def _fail_pending(self) -> None:
        while True:
            job = self._next(0)
            if job is None:
                return
            if job is not _STOP:
                _resolve(job, exc=RuntimeError("the embedded guard is closed"))


def _resolve(job: Job, result: Any = None, exc: BaseException | None = None) -> None:
    def done() -> None:
        if job.future.done():
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
