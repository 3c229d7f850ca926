"""Backend registry: config names to factories, imported lazily.

A factory takes `(options: dict, policies: PolicySet)` and returns a `Guard`.
Heavy backends (torch, transformers, httpx clients) are imported only when
configured, so `rsafe policies validate` and the patterns path stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from guard.errors import GuardConfigError
from guard.policies import PolicySet
from guard.verdict import Guard

Factory = Callable[[dict[str, Any], PolicySet], Guard]

# name -> "module:callable"
BACKENDS: dict[str, str] = {
    "patterns": "guard.patterns:build",
    "embedded": "guard.embedded:build",
    "rsafe": "guard.rsafe:build",
    "cascade": "guard.cascade:build",
}


def available() -> list[str]:
    return sorted(BACKENDS)


def build_guard(name: str, options: dict[str, Any], policies: PolicySet) -> Guard:
    target = BACKENDS.get(name)
    if target is None:
        raise GuardConfigError(f"unknown guard backend {name!r}; choose one of {', '.join(available())}")
    module_name, _, attr = target.partition(":")
    try:
        factory: Factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise GuardConfigError(f"guard backend {name!r} is not available: {exc}") from exc
    return factory(dict(options), policies)
