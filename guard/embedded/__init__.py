"""The `embedded` guard backend: CPU, offline, policy-conditioned (see `guard.py`).

`build(options, policies)` is what `guard.registry` calls for `backend: embedded`.
Options (all optional, see `EmbeddedOptions`): `weights` (a directory with
head.safetensors + meta.json; default: the shipped ones), `max_tokens`,
`max_chars`, `max_batch`, `max_wait_ms`, `threads`, `precision`, `turn_cache`.
`threads` is applied by the process's entry point (`rsafe serve`, `rsafe eval`), never here:
torch's thread count is process-wide (guard/threads.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.policies import PolicySet
from guard.threads import one_thread


def build(options: dict[str, Any], policies: PolicySet):
    from guard.embedded import head as head_mod
    from guard.embedded.encoder import Encoder
    from guard.embedded.examples import load_bank
    from guard.embedded.guard import EmbeddedGuard, EmbeddedOptions
    from guard.errors import validate_options

    opts = validate_options(EmbeddedOptions, dict(options), "embedded guard options")
    weights = Path(opts.weights or head_mod.WEIGHTS_DIR)
    head, meta = head_mod.load(weights)
    overlay = head_mod.overlay_path(weights)
    encoder = Encoder(precision=opts.precision, overlay=overlay)
    # the examples rule reads the base encoder's sentence space (examples.py): not with an overlay
    bank = load_bank(weights) if meta.examples.get("rule") and overlay is None else None
    guard = EmbeddedGuard(encoder, head, meta, opts, bank)
    with one_thread():  # start-up passes on one thread, the process's setting given back (guard/threads.py)
        guard.warm(policies.policies)
    return guard


__all__ = ["build"]
