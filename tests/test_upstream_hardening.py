"""The upstream boundary under faults, over real sockets: the gateway and the fake upstreams as
servers on loopback, the official openai client.

- a cut stream (no finish reason / `[DONE]`, no Responses terminal event, or a broken connection)
  is never passed off as complete: held text is checked and released, then the SDK raises APIError;
- the gateway's upstream key never reaches the client, whatever the upstream echoes;
- an upstream 429's back-off headers reach the client;
- a stale pooled keep-alive connection is retried once when no byte was sent, never after;
- a client that declares more body than it sends gets a 408 quickly.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import openai
import orjson
import pytest
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.settings import Settings
from gateway.upstream import Upstream
from tests.conftest import TEST_POLICIES
from tests.fakes.blocklogs import request_lines
from tests.fakes.guard import ScriptedGuard
from tests.fakes.keepalive import KeepAliveUpstream
from tests.servers import serve

UPSTREAM_KEY = "sk-upstream-" + "Qq1Ww2Ee3Rr4Tt5Yy6"
INPUT_ONLY = """
version: 1
settings: {guard: {backend: patterns, timeout_s: 0.5}}
policies:
  - {id: BANNED, engine: patterns, keywords: [forbidden-word], applies_to: input}
"""


def _gateway(tmp, upstream_url: str, policies: str, **overrides):
    (tmp / "policies.yaml").write_text(policies)
    settings = Settings(policies=tmp / "policies.yaml", upstream=upstream_url, block_log=tmp / "blocks.jsonl",
                        upstream_api_key=UPSTREAM_KEY, upstream_timeout_s=5.0, **overrides)
    return serve(create_app(settings, guard=ScriptedGuard()))


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    with _gateway(tmp, fake.state.url + "/v1", TEST_POLICIES, body_read_timeout_s=0.5) as url:
        yield url, tmp / "blocks.jsonl"


@pytest.fixture(scope="module")
def plain_gateway(fake, tmp_path_factory):
    """No output policy: streams are relayed as they come (the passthrough path)."""
    tmp = tmp_path_factory.mktemp("gw_plain")
    with _gateway(tmp, fake.state.url + "/v1", INPUT_ONLY) as url:
        yield url, tmp / "blocks.jsonl"


def client_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0)




def quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# --- 1. cut streams ---------------------------------------------------------------------------
REPLY = "The held-back tail of this reply must still be checked and released before the error."


def _read_chat(stream) -> tuple[str, str | None, openai.APIError | None]:
    got, finish = "", None
    try:
        for chunk in stream:
            for c in chunk.choices:
                got += c.delta.content or ""
                finish = c.finish_reason or finish
    except openai.APIError as exc:
        return got, finish, exc
    return got, finish, None


@pytest.mark.parametrize("model", ["cut:" + quoted(REPLY), "break:" + quoted(REPLY)])
def test_cut_chat_stream_releases_checked_text_then_raises(gateway, model):
    raw = client_for(gateway[0]).chat.completions.with_raw_response.create(
        model=model, stream=True, messages=[{"role": "user", "content": "go"}])
    got, finish, error = _read_chat(raw.parse())
    assert error is not None, "a cut stream must not look complete"
    assert error.code == "upstream_stream_cut" and error.type == "upstream_error"
    assert got == REPLY, "the held-back text passed its final check and was released"
    assert finish is None
    (line,) = [x for x in request_lines(gateway[1], raw.headers["x-request-id"]) if x["event"] == "upstream_stream_cut"]
    assert line["decision"] == "error" and line["direction"] == "output"
    assert line["error"].startswith("upstream_stream_cut: the upstream stream")


def test_cut_stream_tail_is_judged_not_dropped(gateway):
    text = "A harmless start of a reply, then at the very end VIOLATE:VIOLENCE"
    raw = client_for(gateway[0]).chat.completions.with_raw_response.create(
        model="cut:" + quoted(text), stream=True, messages=[{"role": "user", "content": "go"}])
    got, finish, error = _read_chat(raw.parse())
    assert finish == "content_filter" and error is None  # the final check blocked what was held
    assert "VIOLATE" not in got and text.startswith(got.removesuffix("Blocked by VIOLENCE."))
    lines = request_lines(gateway[1], raw.headers["x-request-id"], count=2)
    assert any(x["decision"] == "block" and x["policies"] == ["VIOLENCE"] for x in lines)
    assert any(x["event"] == "upstream_stream_cut" for x in lines)


def test_cut_responses_stream_raises_api_error(gateway):
    client = client_for(gateway[0])
    deltas = ""
    with pytest.raises(openai.APIError) as info:
        for event in client.responses.create(model="cut:" + quoted(REPLY), input="go", stream=True):
            if event.type == "response.output_text.delta":
                deltas += event.delta
    assert info.value.code == "upstream_stream_cut"
    assert deltas == REPLY
    # the stream helper raises the same APIError (before: RuntimeError, no response.completed)
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="cut:" + quoted(REPLY), input="go") as stream:
            for _ in stream:
                pass


def test_cut_stream_without_output_policies(plain_gateway, fake):
    got, _, error = _read_chat(client_for(plain_gateway[0]).chat.completions.create(
        model="cut", stream=True, messages=[{"role": "user", "content": "relayed as it comes"}]))
    assert got == "relayed as it comes" and error is not None and error.code == "upstream_stream_cut"
    with pytest.raises(openai.APIError):
        for _ in client_for(plain_gateway[0]).responses.create(model="cut", input="hi", stream=True):
            pass
    # and a complete stream still ends cleanly on the same path
    got, finish, error = _read_chat(client_for(plain_gateway[0]).chat.completions.create(
        model="echo", stream=True, messages=[{"role": "user", "content": "whole"}]))
    assert (got, finish, error) == ("whole", "stop", None)


# --- 2. the upstream key never reaches the client ----------------------------------------------
def _assert_scrubbed(response) -> None:
    everything = response.text + json.dumps(dict(response.headers))
    assert UPSTREAM_KEY not in everything
    assert "[REDACTED]" in response.text, "the fake did echo the key: it was scrubbed"


def test_upstream_key_is_scrubbed_from_relayed_errors(gateway, fake):
    client = client_for(gateway[0])
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="echo-auth-401", messages=[{"role": "user", "content": "hi"}])
    assert fake.state.calls[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the key was sent
    _assert_scrubbed(info.value.response)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="echo-auth-401", stream=True, messages=[{"role": "user", "content": "hi"}])
    _assert_scrubbed(info.value.response)
    with pytest.raises(openai.AuthenticationError) as info:
        client.responses.create(model="echo-auth-401", input="hi")
    _assert_scrubbed(info.value.response)


# --- 3. Retry-After on a 429 ------------------------------------------------------------------
def test_rate_limit_headers_reach_the_client(gateway):
    with pytest.raises(openai.RateLimitError) as info:
        client_for(gateway[0]).chat.completions.create(model="ratelimit", messages=[{"role": "user", "content": "hi"}])
    headers = info.value.response.headers
    assert headers["retry-after"] == "7" and headers["retry-after-ms"] == "7000"
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-reset-requests"] == "7s"
    assert headers["x-ratelimit-echo"] == "Bearer [REDACTED]"  # relayed header values are scrubbed too
    assert "x-upstream-trace" not in headers
    assert info.value.code == "rate_limit_exceeded"


# --- 4. stale pooled keep-alive connections -----------------------------------------------------
@pytest.fixture
def raw_upstream():
    server = KeepAliveUpstream()
    yield server
    server.close()


BODY = {"model": "raw", "messages": [{"role": "user", "content": "ping"}]}


async def test_stale_pooled_connection_is_retried_once(raw_upstream):
    """The gateway's upstream client (`gateway.upstream.Upstream`, the component with the retry),
    driven directly: the race needs its event loop held at one exact point, which only the test
    that owns the loop can do."""
    upstream = Upstream(Settings(upstream=raw_upstream.url + "/v1", upstream_timeout_s=5.0))
    try:
        first = await upstream.post("/chat/completions", BODY, None, None)
        assert first["choices"][0]["message"]["content"] == "pong" and raw_upstream.connections == 1
        raw_upstream.close_idle()
        time.sleep(0.1)  # the close lands while this loop is busy: aiohttp has not seen it yet
        with capture_logs() as logs:
            second = await upstream.post("/chat/completions", BODY, None, None)
        assert second["choices"][0]["message"]["content"] == "pong"
        assert [x["event"] for x in logs].count("upstream_stale_connection_retried") == 1
        assert raw_upstream.connections == 2
        assert [n for n, _ in raw_upstream.requests] == [1, 2], "the retried request reached the upstream once"
    finally:
        await upstream.aclose()


def test_no_retry_once_the_request_was_sent(raw_upstream, tmp_path):
    with _gateway(tmp_path, raw_upstream.url + "/v1", INPUT_ONLY) as url:
        client = client_for(url)
        assert client.chat.completions.create(**BODY).choices[0].message.content == "pong"
        raw_upstream.drop_next = True  # it gets the request whole, then hangs up without answering
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(**BODY)
        assert info.value.status_code == 502 and info.value.code == "upstream_error"
    assert [n for n, _ in raw_upstream.requests] == [1, 1], "sent once, never sent again"
    assert raw_upstream.connections == 1


# --- 5. request body read timeout ---------------------------------------------------------------
def test_slow_body_gets_408_quickly(gateway):
    host, port = gateway[0].removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{\"model\": \"echo\"")  # 16 of the 1000 bytes declared
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        elapsed = time.monotonic() - start
        assert sock.recv(1) == b"", "the connection is closed after the 408"
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert 0.4 < elapsed < 3.0, elapsed
    # the gateway is still fine
    assert client_for(gateway[0]).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "after"}]).choices[0].message.content == "after"


def test_full_body_within_the_timeout_is_read(gateway):
    """A body sent in pieces, all of it inside the deadline, is read whole (the timeout is for the body, not per chunk)."""
    host, port = gateway[0].removeprefix("http://").split(":")
    body = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "in pieces"}]})
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 20):
            sock.sendall(body[i:i + 20])
            time.sleep(0.02)
        reply = b""
        while data := sock.recv(65536):
            reply += data
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b"in pieces" in reply

