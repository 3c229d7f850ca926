"""Real sockets: the gateway and the fake upstream as uvicorn servers, the official openai client."""

from __future__ import annotations

import json
import time

import openai
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes.blocklogs import request_lines, whole_lines
from tests.fakes.guard import ScriptedGuard
from tests.servers import serve

SECRET = "sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    from tests.conftest import TEST_POLICIES

    tmp = tmp_path_factory.mktemp("gw")
    (tmp / "policies.yaml").write_text(TEST_POLICIES)
    settings = Settings(policies=tmp / "policies.yaml", upstream=fake.state.url + "/v1",
                        block_log=tmp / "blocks.jsonl", upstream_timeout_s=1.0)
    with serve(create_app(settings, guard=ScriptedGuard())) as url:
        yield url, tmp / "blocks.jsonl"


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway[0] + "/v1", api_key="client-key", max_retries=0)


def log_lines(path, request_id):
    """The request's block-log lines, waited for: a background thread writes them."""
    return request_lines(path, request_id)


def test_allowed_roundtrip_sync(client):
    r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello world"}])
    assert r.choices[0].message.content == "hello world"
    assert r.choices[0].finish_reason == "stop"


async def test_allowed_roundtrip_async(gateway):
    client = openai.AsyncOpenAI(base_url=gateway[0] + "/v1", api_key="k", max_retries=0)
    r = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "async hi"}])
    assert r.choices[0].message.content == "async hi"
    await client.close()


def test_streaming_allowed_identical(client):
    text = "Streaming through the gateway keeps every character in order, window after window."
    stream = client.chat.completions.create(
        model="echo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": text}])
    got, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            got += c.delta.content or ""
            finish = c.finish_reason or finish
    assert got == text and finish == "stop" and usage.total_tokens == 12


def test_input_block_raises_bad_request(client, gateway):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])
    err = info.value
    assert err.code == "content_filter" and err.param == "VIOLENCE"
    rid = err.response.headers["x-request-id"]
    (line,) = log_lines(gateway[1], rid)
    assert line["decision"] == "block" and line["direction"] == "input"


def test_output_block_finish_reason(client, gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="say:VIOLATE%3AVIOLENCE", messages=[{"role": "user", "content": "hi"}])
    r = raw.parse()
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].message.content == "Blocked by VIOLENCE."
    (line,) = log_lines(gateway[1], raw.headers["x-request-id"])
    assert line["direction"] == "output" and line["policies"] == ["VIOLENCE"]


def test_output_block_mid_stream(client):
    text = "fine " * 20 + "VIOLATE:VIOLENCE " + "more " * 20
    stream = client.chat.completions.create(
        model="say:" + text.replace(":", "%3A").replace(" ", "%20"), stream=True,
        messages=[{"role": "user", "content": "go"}])
    got, finish = "", None
    for chunk in stream:  # the loop must end cleanly
        for c in chunk.choices:
            got += c.delta.content or ""
            finish = c.finish_reason or finish
    assert finish == "content_filter"
    assert "VIOLATE" not in got and "more" not in got


def test_redact_both_directions(client, fake, gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": f"my key {SECRET} ok"}])
    r = raw.parse()
    assert SECRET not in fake.state.calls[-1]["body"]["messages"][0]["content"]
    assert r.choices[0].message.content == "my key [REDACTED:api_key] ok"
    # and a secret planted by the upstream itself is masked on the way out
    r = client.chat.completions.create(model=f"say:leaked%20{SECRET}", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "leaked [REDACTED:api_key]"
    lines = log_lines(gateway[1], raw.headers["x-request-id"])
    assert [(x["direction"], x["decision"]) for x in lines] == [("input", "rewrite")]  # the reply was already clean
    # the content itself never reaches the log (only the fake's model name carries the secret here)
    assert all(SECRET not in json.dumps({k: v for k, v in x.items() if k != "model"}) for x in whole_lines(gateway[1]))


def test_streamed_tool_call_checked(client):
    stream = client.chat.completions.create(
        model="tools", stream=True, messages=[{"role": "user", "content": "card 4111 1111 1111 1111 please"}],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])
    args, finish = "", None
    for chunk in stream:
        for c in chunk.choices:
            for call in c.delta.tool_calls or []:
                args += call.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert "4111" not in args and "[REDACTED:credit_card]" in args


def test_upstream_timeout_504(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 504


def test_client_disconnect_cancels_upstream(gateway, fake):
    import httpx

    body = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": "z" * 400}]}
    with httpx.Client() as h, h.stream("POST", gateway[0] + "/v1/chat/completions", json=body) as r:
        for _ in r.iter_lines():
            break  # read one event and hang up
    deadline = time.time() + 5
    while "drip" not in fake.state.cancelled and time.time() < deadline:
        time.sleep(0.05)
    assert "drip" in fake.state.cancelled
    assert "drip" not in fake.state.completed
