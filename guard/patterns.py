"""The `patterns` backend: deterministic detectors, regexes and word lists.

It judges the policies with `engine: patterns` and returns the matched spans,
which is what `rewrite: redact` masks. Pure CPU regex work, microseconds for
chat-sized text, so it runs inline; very long texts go to a thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from functools import lru_cache

from guard.policies import Policy
from guard.verdict import CheckRequest, PolicyResult, Span, Verdict

_DETECTORS: dict[str, re.Pattern[str]] = {
    "api_key": re.compile(
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
        r"|AKIA[0-9A-Z]{16}"  # AWS access key id
        r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
        r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
        r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
        r"|glpat-[A-Za-z0-9_-]{20,})"  # GitLab
    ),
    "private_key": re.compile(
        r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|\Z)"
    ),
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[ .]\d)"
    ),
    "credit_card": re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
}

INLINE_LIMIT = 20_000  # characters; above this the scan runs in a worker thread


def luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@lru_cache(maxsize=256)
def _compiled(policy: Policy) -> tuple[tuple[str, re.Pattern[str]], ...]:
    out: list[tuple[str, re.Pattern[str]]] = [(name, _DETECTORS[name]) for name in policy.detectors]
    out += [("regex", re.compile(rx)) for rx in policy.regex]
    if policy.keywords:
        words = "|".join(re.escape(w) for w in sorted(policy.keywords, key=len, reverse=True))
        out.append(("keyword", re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)))
    return tuple(out)


def find_spans(policy: Policy, text: str) -> tuple[Span, ...]:
    spans = []
    for label, pattern in _compiled(policy):
        for m in pattern.finditer(text):
            if label == "credit_card" and not luhn_ok(m.group()):
                continue
            if m.end() > m.start():
                spans.append(Span(m.start(), m.end(), label))
    return tuple(sorted(spans, key=lambda s: (s.start, -s.end)))


def redact(text: str, spans: tuple[Span, ...] | list[Span]) -> str:
    """Replace each span with `[REDACTED:<label>]`, merging overlaps."""
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.end <= pos:
            continue
        start = max(span.start, pos)
        out.append(text[pos:start])
        out.append(f"[REDACTED:{span.label}]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


class PatternsGuard:
    name = "patterns"

    def scan(self, policies: tuple[Policy, ...], text: str) -> dict[str, tuple[Span, ...]]:
        """Spans per policy in one text (the gateway's per-piece path, used for redaction)."""
        return {p.id: spans for p in policies if (spans := find_spans(p, text))}

    def _scan(self, request: CheckRequest) -> Verdict:
        start = time.perf_counter()
        text = request.content
        results = {}
        for policy in request.policies:
            spans = find_spans(policy, text)
            results[policy.id] = PolicyResult(policy.id, bool(spans), 1.0 if spans else 0.0, spans)
        return Verdict(self.name, results, latency_ms=(time.perf_counter() - start) * 1000, decided_by=self.name)

    async def check(self, request: CheckRequest) -> Verdict:
        if sum(len(t.text) for t in request.judged) > INLINE_LIMIT:
            return await asyncio.to_thread(self._scan, request)
        return self._scan(request)

    async def aclose(self) -> None:
        return None


def build(options: dict, policies) -> PatternsGuard:  # noqa: ARG001 - registry signature
    """Registry factory. The patterns guard has no options."""
    return PatternsGuard()
