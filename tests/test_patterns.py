from __future__ import annotations

from guard.patterns import PatternsGuard, find_spans, luhn_ok, redact
from guard.policies import Direction, Policy
from guard.verdict import CheckRequest, Turn

SECRETS = Policy(id="SECRETS", engine="patterns", detectors=("api_key", "private_key", "email", "phone", "credit_card"))


def masked(text: str) -> str:
    return redact(text, find_spans(SECRETS, text))


def test_luhn():
    assert luhn_ok("4111 1111 1111 1111")
    assert not luhn_ok("4111 1111 1111 1112")


def test_masks_secrets_and_pii():
    key = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    out = masked(f"my key is {key}, mail me at jane.doe@example.com, card 4111-1111-1111-1111")
    assert key not in out and "jane.doe@example.com" not in out and "4111-1111-1111-1111" not in out
    assert "[REDACTED:api_key]" in out and "[REDACTED:email]" in out and "[REDACTED:credit_card]" in out


def test_private_key_block_and_aws_key():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
    out = masked(f"here:\n{pem}\nand AKIAABCDEFGHIJKLMNOP")
    assert "MIIEowIBAAKCAQEA" not in out and "AKIAABCDEFGHIJKLMNOP" not in out


def test_no_false_positive_on_plain_numbers_and_text():
    text = "The year 2024 had 365 days; order #12345 shipped. Luhn-invalid 4111 1111 1111 1112."
    assert masked(text) == text


def test_keywords_are_word_bounded_and_case_insensitive():
    p = Policy(id="K", engine="patterns", keywords=("darn",))
    assert find_spans(p, "Oh DARN it")
    assert not find_spans(p, "darning socks")


async def test_guard_protocol_verdict():
    req = CheckRequest(Direction.INPUT, (Turn("user", "mail x@y.io"),), (SECRETS,))
    verdict = await PatternsGuard().check(req)
    assert verdict.results["SECRETS"].violated
    assert verdict.results["SECRETS"].spans[0].label == "email"


def test_phone_formats():
    for number in ("+1 415-555-0132", "(415) 555-0132", "415.555.0132", "+44 (20) 555 0132"):
        assert "[REDACTED:phone]" in masked(f"call {number} now"), number


# --- RE2 keeps the behaviour of the Python `re` expressions it replaced ---------------------
# The old expressions (backtracking, lookaround) are the oracle here, on short texts where
# backtracking costs nothing; tests/test_patterns_linear.py has the long adversarial ones.

import re  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guard.verdict import Span  # noqa: E402

OLD = {
    "api_key": re.compile(
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,})"
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
KEYWORDS = ("darn", "darn it", "c++", "+", "k", "forbidden-word")


def old_spans(policy: Policy, text: str) -> tuple[Span, ...]:
    pats = [(n, OLD[n]) for n in policy.detectors] + [("regex", re.compile(r)) for r in policy.regex]
    if policy.keywords:
        words = "|".join(re.escape(w) for w in sorted(policy.keywords, key=len, reverse=True))
        pats.append(("keyword", re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)))
    spans = [
        Span(m.start(), m.end(), label)
        for label, p in pats
        for m in p.finditer(text)
        if m.end() > m.start() and (label != "credit_card" or luhn_ok(m.group()))
    ]
    return tuple(sorted(spans, key=lambda s: (s.start, -s.end)))


# Pieces that make each detector match, nearly match, and sit next to each other; the
# non-ASCII ones check that Unicode \w / \d survive (é is a word character, ٣ a digit,
# ² neither), "\ud800" that a lone surrogate is one (non-word) character, as before.
_PIECES = {
    "api_key": ["sk-", "sk-proj-", "a" * 20, "AKIA", "ABCDEFGHIJKLMNOP", "ghp_", "x" * 36, "AIza", "-", "_", " ", "é", "\ud800"],
    "private_key": ["-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----",
                    "-----END RSA PRIVATE KEY-----", "\n", "MIIE", "-----", " "],
    "email": list("aZ0_.%+-@ é\n") + ["ex", "co", "@ex.com", "a.b", ".co", "é@x.io"],
    "phone": ["+1", "+44", "+٣", " ", " ", "-", ".", "(415)", "(20)", "415", "555", "0132", "013", "1", "a", "٣٣٣",
              "_", "+", "x", "²", "\n"],
    "credit_card": list("0123456789 -a٣²") + ["4111", "1111 ", "4242", "٣٣", "--"],
    "keywords": ["darn", "DARN", " it", "c++", "+", "k", "K", "é", "_", " ", "-", "forbidden-word", "ing", "\n"],
}


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_re2_detectors_find_what_the_python_expressions_found(data):
    kind = data.draw(st.sampled_from(sorted(_PIECES)))
    text = "".join(data.draw(st.lists(st.sampled_from(_PIECES[kind]), max_size=30)))
    if kind == "keywords":
        policy = Policy(id="K", engine="patterns", keywords=KEYWORDS)
    else:
        policy = Policy(id="P", engine="patterns", detectors=(kind,))
    assert find_spans(policy, text) == old_spans(policy, text), text


def test_adjacent_matches_share_a_boundary_character():
    """The boundary character a match consumes in RE2 may be the next match's neighbour."""
    phone = Policy(id="P", engine="patterns", detectors=("phone",))
    text = "415-555-0132,(415) 555-0133"
    assert [text[s.start:s.end] for s in find_spans(phone, text)] == ["415-555-0132", "(415) 555-0133"]
    email = Policy(id="E", engine="patterns", detectors=("email",))
    text = "ab@cd.ef.x@y.com"  # the second address starts at a "." right after the first one's last letter
    assert find_spans(email, text) == old_spans(email, text) and len(find_spans(email, text)) == 2
    kw = Policy(id="K", engine="patterns", keywords=("+",))
    assert [(s.start, s.end) for s in find_spans(kw, "++ +")] == [(0, 1), (1, 2), (3, 4)]


def test_spans_are_character_offsets_in_non_ascii_text():
    text = "héllo — mail jane.doe@example.com, 日本 card 4111 1111 1111 1111 ✓"
    spans = find_spans(SECRETS, text)
    assert [text[s.start:s.end] for s in spans] == ["jane.doe@example.com", "4111 1111 1111 1111"]
    assert spans == old_spans(SECRETS, text)


def test_policy_regex_runs_on_re2():
    p = Policy(id="R", engine="patterns", regex=(r"ticket-\d+", r"(?i)secret(word)?"))
    text = "see ticket-42 and SECRETWORD, secret"
    assert [text[s.start:s.end] for s in find_spans(p, text)] == ["ticket-42", "SECRETWORD", "secret"]
