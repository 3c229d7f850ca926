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
