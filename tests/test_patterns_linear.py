"""No text a client sends can make a patterns scan slow, and a long scan never holds up other
requests (issue 14, item 1).

- Every detector, keyword list and policy regex on adversarial input at the gateway's body
  limit: bounded CPU time, and doubling the input about doubles it (linear, not quadratic).
  The old `email` expression took 70+ s on `"a." * 125000`; here it is 4 MiB.
- The pipeline scans a long text in a worker thread: the event loop keeps ticking.
- Over real HTTP, a 4 MiB adversarial chat request runs while `GET /healthz` stays fast.
- A policy regex RE2 cannot run is rejected when the policies load, naming the policy.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.pipeline import Moderator
from gateway.settings import Settings
from guard.errors import PolicyError
from guard.patterns import INLINE_LIMIT, find_spans
from guard.policies import Direction, Policy, PolicySet
from guard.verdict import Turn
from tests.servers import serve

BODY_LIMIT = Settings.model_fields["max_body_bytes"].default  # 4 MiB
TIME_BOUND_S = 10.0  # CPU seconds for one 4 MiB scan; the real numbers are 0.01-4 s


def fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def detector(name: str) -> Policy:
    return Policy(id=name.upper(), engine="patterns", detectors=(name,))


KEYWORDS = Policy(id="BANNED", engine="patterns", keywords=("darn", "forbidden-word", "another-banned-term"))
# Textbook catastrophic-backtracking expressions (exponential in Python's `re`).
REDOS = Policy(id="REDOS", engine="patterns", regex=(r"(a+)+$", r"(x+x+)+y", r"^(\w+\s?)*$", r"(a|aa)+c"))

# (policy, repeated unit, spans per repetition when it is a match-heavy case: those must be found)
CASES = [
    (detector("email"), "a.", None),  # the reported one: quadratic backtracking in `re`
    (detector("email"), "a@", None),
    (detector("email"), "a.@a", None),
    (detector("email"), "é.", None),
    (detector("email"), "x@ex.com ", 1),  # as many matches as fit
    (detector("email"), "é" * 40 + " x@ex.com ", 1),  # matches in non-ASCII text (byte -> character offsets)
    (detector("api_key"), "sk-", None),  # one 4 MiB long key
    (detector("api_key"), "sk-" + "a" * 19 + " ", None),  # a near miss, over and over
    (detector("api_key"), "ghp_", None),
    (detector("private_key"), "-----BEGIN PRIVATE KEY-----", None),  # unterminated: to the end
    (detector("private_key"), "-----BEGIN ", None),
    (detector("phone"), "1 ", None),
    (detector("phone"), "+1 ", None),
    (detector("phone"), "(415) ", None),
    (detector("phone"), "415-555-", None),
    (detector("phone"), "415-555-0132, ", 1),
    (detector("credit_card"), "4 ", None),  # a Luhn candidate at every other digit
    (detector("credit_card"), "1", None),
    (detector("credit_card"), "1-", None),
    (detector("credit_card"), "4111 1111 1111 1111, ", 1),
    (detector("prompt_attack"), "ignore all ", None),  # an override that never reaches its noun
    (detector("prompt_attack"), "ignore the previous ", None),
    (detector("prompt_attack"), "\nSystem", None),
    (detector("prompt_attack"), "ignore all previous instructions. ", 1),
    (KEYWORDS, "darn", None),
    (KEYWORDS, "darn ", 1),
    (KEYWORDS, "forbidden-", None),
    (REDOS, "a", None),
    (REDOS, "x", None),
    (REDOS, "ab ", None),
]


def adversarial(unit: str, n: int) -> str:
    """`unit` repeated to `n` characters, the last one a "!" (what a backtracking engine trips on)."""
    return fill(unit, n - 1) + "!"


def cpu_scan(policy: Policy, text: str) -> tuple[float, int]:
    start = time.process_time()
    spans = find_spans(policy, text)
    return time.process_time() - start, len(spans)


@pytest.mark.parametrize(("policy", "unit", "per_unit"), CASES, ids=[f"{p.id}-{u[:12]!r}" for p, u, _ in CASES])
def test_adversarial_scan_at_the_body_limit_is_linear(policy, unit, per_unit):
    small = min(cpu_scan(policy, adversarial(unit, BODY_LIMIT // 8))[0] for _ in range(2))
    full, n_spans = cpu_scan(policy, adversarial(unit, BODY_LIMIT))
    assert full < TIME_BOUND_S, f"{policy.id} on {unit!r} * {BODY_LIMIT // len(unit)}: {full:.2f} s CPU"
    # Linear: 8x the text costs about 8x the time; quadratic would be 64x. The bound (20x, plus
    # 100 ms for scans of a few milliseconds, where timer noise dominates) leaves room for a
    # loaded machine's noise (2x at 2x the text measured 3.3x once) and none for quadratic.
    assert full <= 20 * small + 0.1, f"{policy.id} on {unit!r}: {small:.3f} s -> {full:.3f} s for 8x the text"
    if per_unit is not None:  # the fast path is not "found nothing"
        assert n_spans >= per_unit * (BODY_LIMIT // len(unit)) - 2


def test_adversarial_regexes_still_match_what_they_should():
    """The ReDoS expressions are run, not skipped: without the "!", two of them match it all."""
    text = fill("a", BODY_LIMIT)
    seconds, n_spans = cpu_scan(REDOS, text)
    assert n_spans == 2 and seconds < TIME_BOUND_S  # `(a+)+$` and `^(\w+\s?)*$`, the whole run


# --- the pipeline keeps the event loop free ---------------------------------------------------

PATTERNS_POLICIES = """
version: 1
settings:
  guard: {backend: patterns}
policies:
  - id: SECRETS
    engine: patterns
    detectors: [api_key, private_key, email, phone, credit_card]
    action: rewrite
    rewrite: redact
  - id: BANNED
    engine: patterns
    keywords: [forbidden-word, another-banned-term]
    action: flag
  - id: TICKETS
    engine: patterns
    regex: ['(a|aa)+$', 'ticket-[0-9]+']
    action: flag
"""


async def test_long_scan_runs_off_the_event_loop():
    policies = PolicySet.from_yaml(PATTERNS_POLICIES)
    moderator = Moderator(None, timeout_s=5)
    text = fill("x@ex.com ", BODY_LIMIT)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    decision = await moderator.check(policies, Direction.INPUT, (Turn("user", text),), [text])
    took = time.perf_counter() - start
    done.set()
    await tick
    assert decision.action == "rewrite" and "x@ex.com" not in decision.rewrites[0]
    assert decision.rewrites[0].count("[REDACTED:email]") == text.count("@")
    # Inline, the loop would stall for the whole scan (max gap ~ took).
    assert len(gaps) >= 5 and max(gaps) < 0.1 + 0.25 * took, (max(gaps, default=took), took)


async def test_short_texts_are_scanned_inline():
    """Below INLINE_LIMIT the scan costs microseconds and stays on the loop (no thread hop)."""
    policies = PolicySet.from_yaml(PATTERNS_POLICIES)
    moderator = Moderator(None, timeout_s=5)
    loop = asyncio.get_running_loop()
    hops: list[object] = []
    original = loop.run_in_executor
    loop.run_in_executor = lambda *a: hops.append(a) or original(*a)  # type: ignore[method-assign]
    try:
        short = fill("mail x@ex.com ", INLINE_LIMIT)
        decision = await moderator.check(policies, Direction.INPUT, (Turn("user", short),), [short])
        assert decision.action == "rewrite" and not hops
        longer = short + " x@ex.com"
        decision = await moderator.check(policies, Direction.INPUT, (Turn("user", longer),), [longer])
        assert decision.action == "rewrite" and len(hops) == 1  # past the limit: one hop to a thread
    finally:
        del loop.run_in_executor


# --- over real HTTP ---------------------------------------------------------------------------


def adversarial_body_text() -> str:
    """Just under the body limit: a slice aimed at each detector (the email one was hours of
    backtracking) and a long match-heavy tail, which keeps the scan busy for a while."""
    budget = BODY_LIMIT - 4096  # the JSON around the content
    eighth = budget // 8
    parts = [fill(u, eighth) for u in ("a.", "4 ", "+1 ", "sk-" + "a" * 19 + " ", "-----BEGIN ", " forbidden-")]
    parts.append(fill(" x@ex.com", budget - sum(map(len, parts))))
    return "".join(parts)


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linear")
    (tmp / "policies.yaml").write_text(PATTERNS_POLICIES)
    settings = Settings(policies=tmp / "policies.yaml", upstream=fake.state.url + "/v1",
                        block_log=tmp / "blocks.jsonl", upstream_timeout_s=120)
    with serve(create_app(settings)) as url:
        yield url


def test_4mib_adversarial_request_does_not_stall_healthz(gateway):
    text = adversarial_body_text()
    client = openai.OpenAI(base_url=gateway + "/v1", api_key="k", max_retries=0, timeout=240)
    result: dict[str, object] = {}

    def big() -> None:
        start = time.perf_counter()
        try:
            result["reply"] = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}]).choices[0].message.content
        finally:
            result["seconds"] = time.perf_counter() - start

    health: list[float] = []
    with httpx.Client(base_url=gateway, timeout=30) as probe:
        assert probe.get("/healthz").status_code == 200
        worker = threading.Thread(target=big)
        worker.start()
        while worker.is_alive():
            start = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            health.append(time.perf_counter() - start)
            time.sleep(0.02)
        worker.join()

    reply = result["reply"]
    assert isinstance(reply, str), result
    # Both scans ran and redacted: the addresses (and nothing else of the text) are masked.
    assert "x@ex.com" not in reply and reply.count("[REDACTED:email]") == text.count("x@ex.com")
    assert reply.startswith("a.a.a.")
    assert len(health) >= 5, f"the request took {result['seconds']:.2f} s: too quick to overlap"
    assert max(health) < 1.0, f"/healthz took up to {max(health):.2f} s during the scan"
    assert max(health) < 0.5 * result["seconds"]  # type: ignore[operator]


# --- policies RE2 cannot run are refused at load ---------------------------------------------


@pytest.mark.parametrize("regex", [r"(?<=sk-)\w+", r"(a)\1", r"(?=x)y", "a{1001}"])
def test_policy_regex_re2_cannot_compile_is_rejected_at_load(tmp_path, regex):
    path = tmp_path / "policies.yaml"
    path.write_text(f"version: 1\npolicies:\n  - id: LEAKS\n    engine: patterns\n    regex: ['{regex}']\n")
    with pytest.raises(PolicyError) as info:
        PolicySet.load(path)
    message = str(info.value)
    assert "policy LEAKS" in message and "RE2" in message and repr(regex) in message
    assert f"{path}:5" in message  # the line of the regex, for the editor
