"""The RSafe reasoning guard: prompt, parser and model back ends.

`build(options, policies)` is the registry factory (`guard.rsafe:build`); it is
defined in `guard.rsafe.backend` and imported lazily here so that importing the
prompt/parser (what `training/` needs) pulls in neither httpx nor torch.
"""

from __future__ import annotations

from typing import Any


def build(options: dict[str, Any], policies: Any):
    from guard.rsafe.backend import build as _build

    return _build(options, policies)
