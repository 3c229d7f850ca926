"""The `embedded` guard backend: CPU, offline, policy-conditioned (see `guard.py`).

`build(options, policies)` is what `guard.registry` calls for `backend: embedded`.
Options (all optional, see `EmbeddedOptions`): `weights` (a directory with
head.safetensors + meta.json; default: the shipped ones), `max_tokens`,
`max_chars`, `max_batch`, `max_wait_ms`, `threads`, `precision`, `turn_cache`.
Under `rsafe serve --workers N` the torch threads are at most the CPUs divided among the
workers (RSAFE_WORKER_THREADS, set by the supervisor).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guard.policies import PolicySet


def build(options: dict[str, Any], policies: PolicySet):
    import torch

    from guard.embedded import head as head_mod
    from guard.embedded.encoder import Encoder
    from guard.embedded.guard import EmbeddedGuard, EmbeddedOptions
    from guard.errors import validate_options

    opts = validate_options(EmbeddedOptions, dict(options), "embedded guard options")
    head, meta = head_mod.load(Path(opts.weights or head_mod.WEIGHTS_DIR))
    threads = max(1, min(opts.threads, os.cpu_count() or 1))
    cap = os.environ.get("RSAFE_WORKER_THREADS", "")  # `rsafe serve --workers N`: the CPUs / N (gateway/commands/workers.py)
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    encoder = Encoder(precision=opts.precision, overlay=head_mod.overlay_path(Path(opts.weights or head_mod.WEIGHTS_DIR)))
    guard = EmbeddedGuard(encoder, head, meta, opts)
    # Start-up passes on one thread: a few hundred ms of CPU either way, but OpenMP threads that
    # spin-wait for each other on a busy machine made them take seconds (measured: 0.3 s of CPU
    # on one thread against 0.9-2.8 s on two at load average 10 on 2 cores).
    torch.set_num_threads(1)
    try:
        guard.warm(policies.policies)
    finally:
        torch.set_num_threads(threads)
    return guard


__all__ = ["build"]
