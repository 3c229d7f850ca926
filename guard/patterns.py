"""The `patterns` backend: deterministic detectors, regexes and word lists.

It judges the policies with `engine: patterns` and returns the matched spans,
which is what `rewrite: redact` masks.

Every expression runs on RE2 (`google-re2`), whose matching time is linear in
the text whatever the expression or the input, so no client text can make a
scan backtrack (Python's `re` took 70+ s on `"a." * 125000` with the old email
expression). RE2 has no lookaround, so the detectors that need a boundary
(`\\b`, "not after a digit", ...) consume the neighbouring character outside a
capturing group and take the span from the group; the search for the next match
starts one character before the previous span's end, so that character can serve
as the next match's left neighbour, exactly as a lookbehind would. `\\w` and
`\\d` keep Python's Unicode meaning (`[\\pL\\pN_]`, `\\p{Nd}`).

Scans work on the UTF-8 bytes of the text (one encoding per scan, not one per
match) and convert the byte offsets back to character offsets at the end.
A scan of a few MB is tens of milliseconds of C time with the GIL released;
callers run long texts in a worker thread (`INLINE_LIMIT`).
"""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache

import re2

from guard import prompt_attack
from guard.policies import Policy
from guard.verdict import CheckRequest, PolicyResult, Span, Verdict

INLINE_LIMIT = 20_000  # characters; above this the scan runs in a worker thread

_W = r"\pL\pN_"  # Python's Unicode \w, as the inside of a character class
_D = r"\p{Nd}"  # Python's Unicode \d
_START = r"\A"  # only in a search from offset 0: RE2 never matches \A at a later start


def _options(*, capture: bool = True) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # a bad pattern is reported by the caller, not on stderr
    opts.never_capture = not capture
    return opts


def compile_regex(pattern: str):
    """A policy's `regex`, as the patterns guard runs it (RE2, groups ignored: only the
    whole match is a span, and no groups keeps the search on RE2's DFA). Raises
    ValueError with RE2's reason for what it cannot compile: lookaround, backreferences..."""
    try:
        return re2.compile(pattern, _options(capture=False))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


class _Bounded:
    """A detector whose span is the first participating group, with the boundary
    characters matched outside it. `first` (may use \\A) serves the search from offset 0;
    `later` (no \\A) every search after a match, started one character before its end."""

    __slots__ = ("first", "later", "back", "groups")

    def __init__(self, build, back: bool = True) -> None:
        self.first = re2.compile(build(_START), _options())
        self.later = re2.compile(build(None), _options()) if back else self.first
        self.back = back
        self.groups = self.first.groups

    def spans(self, data: bytes):
        """(start, end) byte offsets of the group of each match, in order."""
        rx, pos, n, groups = self.first, 0, len(data), self.groups
        while pos <= n:
            m = rx.search(data, pos)
            if m is None:
                return
            start, end = m.span(1) if groups == 1 else _first_group(m, groups)
            yield start, end
            if self.back:  # the last character of this span may be the next one's left neighbour
                pos = end - 1
                while pos > 0 and data[pos] & 0xC0 == 0x80:
                    pos -= 1
            else:
                pos = end
            rx = self.later


def _first_group(m, groups: int) -> tuple[int, int]:
    for i in range(1, groups + 1):
        start, end = m.span(i)
        if start >= 0:
            return start, end
    return m.span()


def _before(chars: str):
    """A prefix equal to the lookbehind `(?<![chars])`."""
    return lambda start: f"(?:{start}|[^{chars}])" if start else f"[^{chars}]"


def _api_key(start):
    body = (
        r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
        r"|AKIA[0-9A-Z]{16}"  # AWS access key id
        r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
        r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
        r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
        r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    )
    return _before(_W)(start) + f"({body})"  # `\b` before a word character


def _private_key(start):  # noqa: ARG001 - no boundary
    return r"(-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----(?s:.)*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|\z))"


def _email(start):
    # Was `\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b`. The leading `\b` depends on the
    # first character: a word character needs a non-word neighbour (or the start), one of
    # `.%+-` needs a word neighbour. The trailing `\b` follows a letter: a non-word or the end.
    rest = r"[A-Za-z0-9._%+-]*@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
    alts = [f"[^{_W}]([A-Za-z0-9_]{rest})", f"[{_W}]([.%+-]{rest})"]
    if start:
        alts.insert(0, f"{start}([A-Za-z0-9_]{rest})")
    return f"(?:{'|'.join(alts)})(?:\\z|[^{_W}])"


def _phone(start):
    # Was `(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[ .]\d)`.
    body = rf"(?:\+{_D}{{1,3}}[ .-]?)?(?:\({_D}{{2,4}}\)[ .-]?|{_D}{{3}}[ .-]){_D}{{3}}[ .-]{_D}{{4}}"
    after = rf"(?:\z|[^{_W}\-. ]|[ .](?:\z|[^{_D}]))"  # `(?![\w-]|[ .]\d)`
    return _before(_W + "+")(start) + f"({body})" + after


def _credit_card(start):
    # Was `(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)`; a Luhn check follows.
    return _before(_D)(start) + rf"((?:{_D}[ -]?){{12,18}}{_D})(?:\z|[^{_D}])"


def _prompt_attack(start):
    return _before(_W)(start) + f"({prompt_attack.expression()})"


_BUILDERS = {
    "api_key": (_api_key, True),
    "prompt_attack": (_prompt_attack, True),
    "private_key": (_private_key, False),
    "email": (_email, True),
    "phone": (_phone, True),
    "credit_card": (_credit_card, True),
}


@lru_cache(maxsize=None)
def _detector(name: str) -> _Bounded:
    build, back = _BUILDERS[name]
    return _Bounded(build, back)


def _keywords(words: tuple[str, ...]) -> _Bounded:
    """Whole words, case-insensitive: was `(?<!\\w)(?:w1|w2|...)(?!\\w)` with IGNORECASE,
    longest word first."""
    alts = "|".join(re2.escape(w) for w in sorted(words, key=len, reverse=True) if w)
    return _Bounded(lambda start: _before(_W)(start) + f"((?i:{alts}))(?:\\z|[^{_W}])")


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
def _compiled(policy: Policy) -> tuple[tuple[str, object], ...]:
    out: list[tuple[str, object]] = [(name, _detector(name)) for name in policy.detectors]
    out += [("regex", compile_regex(rx)) for rx in policy.regex]
    if any(policy.keywords):
        out.append(("keyword", _keywords(policy.keywords)))
    return tuple(out)


def _regex_spans(rx, data: bytes):
    """Non-empty whole matches, left to right; an empty match moves on by one character."""
    pos, n = 0, len(data)
    while pos <= n:
        m = rx.search(data, pos)
        if m is None:
            return
        start, end = m.span()
        if end > start:
            yield start, end
            pos = end
        else:
            pos = end + 1
            while pos < n and data[pos] & 0xC0 == 0x80:
                pos += 1


_CONTINUATION = bytes(range(0x80, 0xC0))


def _char_offsets(data: bytes, offsets: set[int]) -> dict[int, int]:
    """Byte offset -> character offset (one pass over the text, whatever the number of spans)."""
    out, last, chars = {}, 0, 0
    for off in sorted(offsets):
        chars += len(data[last:off].translate(None, _CONTINUATION))
        out[off], last = chars, off
    return out


def find_spans(policy: Policy, text: str) -> tuple[Span, ...]:
    # A lone surrogate becomes "?": one character for one, a non-word neighbour as before.
    data = text.encode("utf-8", "replace")
    found: list[tuple[int, int, str]] = []
    for label, matcher in _compiled(policy):
        scanned = text.translate(prompt_attack.LEET).encode("utf-8", "replace") if label == "prompt_attack" else data
        pairs = matcher.spans(scanned) if isinstance(matcher, _Bounded) else _regex_spans(matcher, data)
        for start, end in pairs:
            if label == "credit_card" and not luhn_ok(data[start:end].decode("utf-8")):
                continue
            if label == "prompt_attack" and prompt_attack.defensive(data[end : end + 40].decode("utf-8", "ignore")):
                continue
            if end > start:
                found.append((start, end, label))
    if not found:
        return ()
    if len(data) != len(text):  # not ASCII: byte offsets are not character offsets
        where = _char_offsets(data, {o for s, e, _ in found for o in (s, e)})
        found = [(where[s], where[e], label) for s, e, label in found]
    return tuple(sorted((Span(s, e, label) for s, e, label in found), key=lambda s: (s.start, -s.end)))


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


def _role_spans(policy: Policy, turns) -> tuple[Span, ...]:
    """The spans of a policy with `roles:` in the turns of those roles, as offsets into the
    joined content (turns joined by a blank line, as `CheckRequest.content`)."""
    out: list[Span] = []
    offset = 0
    for turn in turns:
        if turn.role in policy.roles:
            out += [Span(s.start + offset, s.end + offset, s.label) for s in find_spans(policy, turn.text)]
        offset += len(turn.text) + 2
    return tuple(out)


def scanned(policy: Policy, role: str | None) -> bool:
    """Whether a piece of this role is scanned for the policy (None: a role not known, scanned)."""
    return not policy.roles or role is None or role in policy.roles


class PatternsGuard:
    name = "patterns"

    def scan(self, policies: tuple[Policy, ...], text: str, role: str | None = None) -> dict[str, tuple[Span, ...]]:
        """Spans per policy in one text (the gateway's per-piece path, used for redaction); a
        policy with `roles:` skips a piece of another role."""
        return {p.id: spans for p in policies if scanned(p, role) and (spans := find_spans(p, text))}

    def _scan(self, request: CheckRequest) -> Verdict:
        start = time.perf_counter()
        text = request.content
        results = {}
        for policy in request.policies:
            spans = find_spans(policy, text) if not policy.roles else _role_spans(policy, request.judged)
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
