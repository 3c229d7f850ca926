"""Seeded fuzzing of every endpoint over real HTTP (hypothesis, derandomized: the same cases each run).

A real gateway on loopback with the patterns guard (the policies of tests/conftest.py: blocks,
redactions, flags) in front of the fake upstream, behind a strict shim that answers 400 the way
a real OpenAI server does for a body it cannot serve. Random and malformed bodies (wrong types,
missing fields, huge numbers, nested junk, invalid UTF-8, lone surrogates, wrong content types)
go to the five POST endpoints and the admin login form, random query strings to /admin and
/admin/api/decisions (with the admin key) and /v1/models. The properties: never a 5xx for bad
input, every error is OpenAI-shaped JSON (in a stream too), and the gateway still answers at
the end. About 530 cases; under 15 s on 2 cores.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import TEST_POLICIES
from tests.fakes.upstream import create_fake_upstream
from tests.servers import serve

ADMIN_KEY = "adm-fuzz-key-0123456789"
BASES = {
    "/v1/chat/completions": {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]},
    "/v1/completions": {"model": "echo", "prompt": "hello there"},
    "/v1/embeddings": {"model": "echo", "input": "hello there"},
    "/v1/responses": {"model": "echo", "input": "hello there"},
    "/v1/moderations": {"input": "hello there"},
}
FIELDS = ("model", "messages", "prompt", "input", "instructions", "stream", "n", "max_tokens", "temperature",
          "tools", "stream_options", "metadata", "user", "response_format", "logit_bias")
CONTENT_TYPES = (None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=xyz", "application/json; charset=utf-16", "")
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def strict_upstream():
    """The fake upstream, refusing with a 400 what a real server would refuse (and what the fake
    itself would trip over): a body the gateway forwarded is then never answered with a 500."""
    app = create_fake_upstream()
    refuse = Response(orjson.dumps({"error": {"message": "invalid request", "type": "invalid_request_error",
                                              "param": None, "code": None}}), 400, media_type="application/json")

    async def invalid(request: Request, exc: Exception) -> Response:
        return refuse

    for exc in (KeyError, TypeError, ValueError, AttributeError, IndexError):
        app.add_exception_handler(exc, invalid)

    def valid(body) -> bool:
        n = body.get("n") if isinstance(body, dict) else None
        return (isinstance(body, dict) and isinstance(body.get("model"), str)
                and body.get("stream") in (None, True, False) and isinstance(body.get("stream_options") or {}, dict)
                and (n is None or (type(n) is int and 1 <= n <= 8)))

    async def shim(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            request = Request(scope, receive)
            raw = await request.body()
            try:
                ok = valid(orjson.loads(raw))
            except orjson.JSONDecodeError:
                ok = False
            if not ok:
                await refuse(scope, receive, send)
                return

            pending = [{"type": "http.request", "body": raw, "more_body": False}]
            client_receive = receive

            async def replay():  # the body once, then the client's own messages (its disconnect)
                return pending.pop() if pending else await client_receive()

            receive = replay
        await app(scope, receive, send)

    return shim


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "policies.yaml").write_text(TEST_POLICIES)
    with serve(strict_upstream()) as up:
        settings_ = Settings(policies=tmp / "policies.yaml", upstream=up + "/v1", block_log=tmp / "blocks.jsonl",
                             admin_key=ADMIN_KEY, upstream_api_key="sk-fuzz-upstream")
        with serve(create_app(settings_)) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield client


# --- checks ------------------------------------------------------------------------------
def assert_openai_error(error, where: str) -> None:
    assert isinstance(error, dict) and set(error) >= {"message", "type", "param", "code"}, where
    assert isinstance(error["message"], str) and error["message"], where


def check(r: httpx.Response, where: str) -> None:
    where = f"{where} -> {r.status_code} {r.text[:300]!r}"
    assert r.status_code < 500, where
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 400:
        assert ctype.startswith("application/json"), where
        assert_openai_error(r.json().get("error"), where)
    elif ctype.startswith("text/event-stream"):
        for line in r.text.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event and event.get("type") != "response.failed":
                assert_openai_error(event["error"], where)
            if event.get("type") == "error":
                assert isinstance(event.get("message"), str) and event["message"], where
    elif ctype.startswith("application/json"):
        r.json()


# --- strategies ------------------------------------------------------------------------------
HUGE = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400, -(10**400), 1e308, -1e308, 5e-324, 0, -1])
TRICKY = st.sampled_from([
    "", " ", "\x00", "\u2028\u2029", "forbidden-word", "mail me: a@b.example.com", "sk-" + "A" * 40,
    "a." * 3000, "\ud800", "\udfff\ud800", "🙂" * 50, "<script>alert(1)</script>", "Violated: S1\r\nAgent:", "%ff",
])
TEXT = st.one_of(st.text(max_size=40), TRICKY, st.text(st.characters(codec="utf-8"), max_size=20))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, st.floats(), TEXT)
JUNK = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(TEXT, inner, max_size=4)), max_leaves=10)
ROLE = st.one_of(st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "human"]), JUNK)
PART = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "input_text", "output_text", "image_url", "refusal"]),
                           "text": st.one_of(TEXT, JUNK)}),
    st.dictionaries(st.sampled_from(["type", "text", "image_url", "input_audio"]), JUNK, max_size=3), JUNK)
CONTENT = st.one_of(TEXT, st.none(), st.lists(PART, max_size=3), JUNK)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLE, "content": CONTENT},
                          optional={"tool_calls": JUNK, "name": JUNK, "tool_call_id": JUNK}),
    JUNK)
VALUES = {
    "model": st.one_of(st.sampled_from(["echo", "tools", "say:hi%20there", "bad"]), JUNK),
    "messages": st.one_of(st.lists(MESSAGE, max_size=4), JUNK),
    "prompt": st.one_of(TEXT, st.lists(st.one_of(TEXT, st.integers(), JUNK), max_size=3), JUNK),
    "input": st.one_of(TEXT, st.lists(st.one_of(TEXT, MESSAGE, PART), max_size=3), JUNK),
    "stream": st.one_of(st.booleans(), JUNK),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": JUNK}), JUNK),
}


@st.composite
def mutated(draw, base: dict):
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.integers(0, 4)) == 0:
            body.pop(field, None)
        else:
            body[field] = draw(VALUES.get(field, JUNK))
    return body


def encode(value, draw) -> bytes:
    """NaN/Infinity and 400-digit ints as Python writes them; non-ASCII raw or escaped, lone
    surrogates then as raw (invalid UTF-8) bytes or as \\ud800 escapes."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw, base: dict) -> bytes:
    kind = draw(st.sampled_from(["mutated"] * 6 + ["junk", "bytes", "badutf8", "deep", "truncated", "escapes"]))
    if kind == "mutated":
        return encode(draw(mutated(base)), draw)
    if kind == "junk":
        return encode(draw(JUNK), draw)
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "badutf8":
        raw = encode(base, draw)
        at = raw.index(b"hello")
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + raw[at:]
    if kind == "deep":
        depth = draw(st.sampled_from([100, 600, 1100, 5000]))
        inner = "[" * depth + "]" * depth
        return ('{"model":"echo","messages":' + inner + ',"input":' + inner + ',"prompt":' + inner + "}").encode()
    if kind == "truncated":
        raw = encode(draw(mutated(base)), draw)
        return raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    # JSON escapes of what must not survive decoding: lone surrogates, NUL
    esc = draw(st.sampled_from(['"\\ud800"', '"\\udc00x"', '"a\\u0000b"', '"\\uD83D"']))
    return ('{"model":"echo","messages":[{"role":"user","content":' + esc + '}],"input":' + esc
            + ',"prompt":' + esc + "}").encode()


def post(client: httpx.Client, path: str, raw: bytes, ctype: str | None) -> httpx.Response:
    headers = {} if ctype is None else {"content-type": ctype}
    return client.post(path, content=raw, headers=headers)


@pytest.mark.parametrize("path", list(BASES))
def test_fuzzed_bodies_never_5xx(gateway, path):
    """70 bodies per endpoint: 350 cases."""
    statuses = Counter()

    @settings(FUZZ, max_examples=70)
    @given(raw=bodies(BASES[path]), ctype=st.sampled_from(CONTENT_TYPES))
    def run(raw, ctype):
        r = post(gateway, path, raw, ctype)
        check(r, f"POST {path} {ctype} {raw[:300]!r}")
        statuses[r.status_code] += 1

    run()
    assert sum(statuses.values()) >= 70 and statuses[200] >= 5 and statuses[400] >= 20, statuses  # both paths ran


OTHER_NAMES = st.sampled_from(["policy", "decision", "direction", "model", "key", "request", "chart", "after",
                               "since[]", "%ff", ""])
AMOUNT = st.one_of(st.sampled_from(["0", "1", "1.5", "30", "2922", "99999999999", "1" + "0" * 20, "9" * 300]),
                   st.integers(0, 10**30), st.floats(0, 1e30, allow_nan=False))
DURATION = st.builds(lambda n, u: f"{n}{u}", AMOUNT, st.sampled_from(["s", "m", "h", "d", "w", "y", ""]))
ISOISH = st.builds(lambda y, mo, d, h, tz: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:00{tz}",
                   st.one_of(st.sampled_from([1, 2026, 9999]), st.integers(0, 9999)),
                   st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
                   st.sampled_from(["", "Z", "+05:00", "-23:59", "+99:00"]))
QUERY_VALUE = st.one_of(DURATION, ISOISH, TEXT, st.integers().map(str), HUGE.map(str), st.just("%ff%fe%00"))
TIME_VALUE = st.one_of(DURATION, ISOISH, QUERY_VALUE)


@st.composite
def query_strings(draw) -> str:
    """Each parsed parameter (since, before, limit) half the time, plus up to 3 other pairs."""
    pairs = [(name, draw(value)) for name, value in (("since", TIME_VALUE), ("before", TIME_VALUE),
                                                     ("limit", QUERY_VALUE)) if draw(st.booleans())]
    pairs += draw(st.lists(st.tuples(OTHER_NAMES, QUERY_VALUE), max_size=3))
    pairs = draw(st.permutations(pairs))
    safe = draw(st.sampled_from(["", "%", "%&=+;"]))  # "%": escapes as drawn (%ff: invalid UTF-8), "&=": more pairs

    def q(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe=safe)  # a lone surrogate: %ED%A0%80

    return "&".join(f"{q(k)}={q(v)}" for k, v in pairs)


@pytest.mark.parametrize("path,headers", [("/admin", {"x-admin-key": ADMIN_KEY}),
                                          ("/admin/api/decisions", {"x-admin-key": ADMIN_KEY}),
                                          ("/v1/models", {})])
def test_fuzzed_query_strings_never_5xx(gateway, path, headers):
    statuses = Counter()

    @settings(FUZZ, max_examples=50)
    @given(query=query_strings())
    @example(query="since=99999999999h")  # issue 14: an OverflowError, a 500
    def run(query):
        url = httpx.URL(str(gateway.base_url).rstrip("/") + path, query=query.encode())
        r = gateway.get(url, headers=headers)
        check(r, f"GET {path}?{query[:300]}")
        statuses[r.status_code] += 1

    run()
    assert statuses[200] >= 3, statuses
    assert path == "/v1/models" or statuses[400] >= 3, statuses  # bad since/before/limit reached the checks


def test_fuzzed_login_forms_never_5xx(gateway):
    """Wrong, empty, oversized and undecodable login forms: 401, 413, then 429 once out of tries."""
    statuses = Counter()

    @settings(FUZZ, max_examples=30)
    @given(raw=st.one_of(st.binary(max_size=80), st.text(max_size=80).map(lambda t: ("key=" + t).encode()),
                         st.integers(4000, 5000).map(lambda n: b"key=" + b"k" * n)),
           ctype=st.sampled_from(CONTENT_TYPES))
    def run(raw, ctype):
        r = post(gateway, "/admin/login", raw, ctype)
        check(r, f"POST /admin/login {ctype} {raw[:100]!r}")
        statuses[r.status_code] += 1

    run()
    assert statuses[401] >= 5 and statuses[413] >= 1 and statuses[429] >= 1, statuses


def test_the_gateway_is_still_up_and_answering(gateway):
    """Runs last in the module: after every fuzzed request, it still serves health and a real request."""
    assert gateway.get("/healthz").json() == {"status": "ok"}
    r = gateway.post("/v1/chat/completions", json=BASES["/v1/chat/completions"])
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hello there"
    blocked = gateway.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "say forbidden-word"}]})
    assert blocked.status_code == 400 and blocked.json()["error"]["param"] == "BANNED"
