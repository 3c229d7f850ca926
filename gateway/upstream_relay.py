"""What the gateway relays from the upstream, made safe: its secrets scrubbed, the useful headers kept.

The gateway adds secrets to upstream requests (the upstream API key of each route, sent as
`Authorization: Bearer ...`). An upstream that echoes the request in an error body (some proxies
answer a 401 with the headers they got) would hand that key to the client. `Scrubber` replaces
every such secret, raw or JSON-escaped, with `[REDACTED]` in everything relayed: error bodies,
JSON replies, SSE lines, relayed header values and error messages built from upstream text.
The check is a substring search per secret (`bytes in bytes`, memchr speed); nothing is copied
unless a secret is found. Secrets shorter than `MIN_SECRET_CHARS` are not scrubbed: they would
match ordinary text and corrupt replies.

`relayed_headers` keeps what a client needs to back off from an upstream 4xx (429 above all):
`Retry-After`, `retry-after-ms` (read by the OpenAI SDKs) and `x-ratelimit-*`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from gateway.settings import Settings

MIN_SECRET_CHARS = 8
REDACTED = "[REDACTED]"
RELAYED_HEADERS = ("retry-after", "retry-after-ms")
RELAYED_PREFIXES = ("x-ratelimit-",)


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                needles.add(secret)
                needles.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
        self.texts = sorted(needles, key=len, reverse=True)
        self.raw = [n.encode() for n in self.texts]

    @classmethod
    def from_settings(cls, settings: Settings) -> Scrubber:
        keys = [settings.upstream_api_key, *(route.api_key for route in settings.upstream_routes)]
        return cls(key.get_secret_value() for key in keys if key is not None)

    def __bool__(self) -> bool:
        return bool(self.raw)

    def bytes(self, data: bytes) -> bytes:
        for needle in self.raw:
            if needle in data:
                data = data.replace(needle, REDACTED.encode())
        return data

    def text(self, text: str) -> str:
        for needle in self.texts:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text


def relayed_headers(headers: Mapping[str, str], scrub: Scrubber) -> dict[str, str]:
    """The back-off headers of an upstream error reply, lower-cased, values scrubbed."""
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in RELAYED_HEADERS or lower.startswith(RELAYED_PREFIXES):
            out[lower] = scrub.text(value)
    return out
