"""Torch's intra-op thread count: process-wide, so the process's entry point sets it, once.

No guard constructor touches it. `configure(backend, options, cap)` is called by the entry points
that run an in-process guard for long: `rsafe serve` / `rsafe guard serve` (each `--workers` worker
too, whose `cap` is its share of the CPUs, RSAFE_WORKER_THREADS; gateway/commands/workers.py) and
`rsafe eval`. It sets the embedded guard's `threads` option (default 2; the first stage's in a
cascade), at most the CPUs this process may use and `cap`. For any other backend it does nothing
and imports nothing (no torch for a patterns-only or a vLLM-backed gateway). A process that never
calls it (tests, `rsafe check`, a program that builds a guard itself) keeps torch's default, one
thread per core; such a program sets `torch.set_num_threads` itself.

`one_thread()` runs a block on one thread and gives the process its setting back after: the
guards' start-up passes use it (a few hundred ms of CPU either way, but OpenMP threads that
spin-wait for each other on a busy machine made them take seconds: 0.3 s of CPU on one thread
against 0.9-2.8 s on two at load average 10 on 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def embedded_threads(backend: str, options: Mapping[str, Any]) -> int | None:
    """The `threads` option of the embedded guard this backend runs, or None when it runs none."""
    if backend == "cascade":
        return embedded_threads(str(options.get("first", "embedded")), options.get("first_options") or {})
    if backend != "embedded":
        return None
    from guard.embedded.guard import EmbeddedOptions
    from guard.errors import validate_options

    return validate_options(EmbeddedOptions, dict(options), "embedded guard options").threads


def configure(backend: str, options: Mapping[str, Any], cap: int | None = None) -> int | None:
    """Set torch's threads for the guard `backend` will run in this process; the count set, or None."""
    wanted = embedded_threads(backend, options)
    if wanted is None:
        return None
    import torch

    threads = max(1, min(wanted, os.cpu_count() or 1, cap or wanted))
    torch.set_num_threads(threads)
    return threads


@contextmanager
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
