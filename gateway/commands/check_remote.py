"""`rsafe check --url`: one text judged by a running gateway (stdlib HTTP only: no start-up cost).

The request is `POST {url}/v1/moderations` with the `rsafe_check` extension
(gateway/commands/checkreport.py); the answer's `rsafe_check[0]` is what the local check prints.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from guard.policies import Direction


class RemoteCheckError(Exception):
    """The gateway could not be asked, or did not answer with a check report."""


def moderations_url(url: str) -> str:
    """`http://host:port`, `.../v1` or the full `.../v1/moderations` -> the moderations URL."""
    base = url.rstrip("/")
    if base.endswith("/v1/moderations"):
        return base
    return base.removesuffix("/v1") + "/v1/moderations"


def check_remote(url: str, role: Direction, text: str, context: str = "", *, api_key: str | None = None,
                 timeout_s: float = 30.0) -> dict[str, Any]:
    body = {"input": text, "rsafe_check": {"direction": role.value, "context": context}}
    headers = {"content-type": "application/json", "accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    target = moderations_url(url)
    request = urllib.request.Request(target, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the operator's URL
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise RemoteCheckError(f"{target} answered {exc.code}: {_error_message(exc.read())}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteCheckError(f"cannot reach {target}: {reason}") from exc
    try:
        reports = json.loads(raw)["rsafe_check"]
        report = reports[0]
        report["decision"]  # noqa: B018 - the one key the exit code needs
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RemoteCheckError(f"{target} did not answer with a check report (is it an RSafe gateway?)") from exc
    return report


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace") or "(empty body)"
