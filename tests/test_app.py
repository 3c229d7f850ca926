"""App tests in-process (Starlette's TestClient) against the scripted fake upstream on a loopback port."""

from __future__ import annotations

import json

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewayKey, Settings
from tests.fakes.guard import ScriptedGuard


@pytest.fixture
def fake(fake_server):
    for name in ("calls", "cancelled", "completed"):
        getattr(fake_server.state, name).clear()
    return fake_server


def make_client(tmp_path, policies_path, fake, **overrides):
    settings = Settings(
        policies=policies_path, upstream=fake.state.url + "/v1", block_log=tmp_path / "blocks.jsonl",
        upstream_api_key="sk-upstream-secret-XYZ", **overrides,
    )
    return TestClient(create_app(settings, guard=ScriptedGuard()), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path, policies_path, fake):
    with make_client(tmp_path, policies_path, fake) as c:
        yield c


def chat(client, content, model="echo", **extra):
    return client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def log_lines(tmp_path, client=None):
    """The block log's lines; with `client`, after its background writer has written everything
    recorded so far (reading before that raced the writer under load)."""
    if client is not None:
        client.app.state.gateway.blocklog.flush()
    path = tmp_path / "blocks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_allowed_roundtrip_passes_unknown_fields_and_key(client, fake):
    r = chat(client, "hello", seed=7, logprobs=True, response_format={"type": "text"}, custom_field={"x": 1})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello"
    sent = fake.state.calls[-1]
    assert sent["body"]["custom_field"] == {"x": 1} and sent["body"]["seed"] == 7
    assert sent["headers"]["authorization"] == "Bearer sk-upstream-secret-XYZ"
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["x-rsafe-input-decision"] == "allow" and r.headers["x-rsafe-output-decision"] == "allow"
    assert "VIOLENCE" in r.headers["x-rsafe-policies-checked"]


def test_input_block_is_400_content_filter(client, fake, tmp_path):
    r = chat(client, "VIOLATE:VIOLENCE now")
    assert r.status_code == 400
    assert r.headers["x-should-retry"] == "false"
    err = r.json()["error"]
    assert err["code"] == "content_filter" and err["param"] == "VIOLENCE"
    assert err["message"] == "Blocked by VIOLENCE. (Your request was rejected as a result of the safety system.)"
    assert fake.state.calls == [], "a blocked request must not reach the upstream"
    (line,) = log_lines(tmp_path, client)
    assert line["decision"] == "block" and line["policies"] == ["VIOLENCE"] and line["direction"] == "input"
    assert line["request_id"] == r.headers["x-request-id"]
    assert "content" not in line and line["content_sha256"].startswith("sha256:")
    assert line["reasoning"] == "scripted: VIOLENCE"


def test_output_block_replaces_message(client):
    r = chat(client, "x", model="say:VIOLATE%3AVIOLENCE%20here")
    body = r.json()
    assert r.status_code == 200
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][0]["message"]["content"] == "Blocked by VIOLENCE."
    assert r.headers["x-rsafe-output-decision"] == "block"


def test_redact_both_directions(client, fake):
    r = chat(client, "my email is bob@corp.example ok")
    sent = fake.state.calls[-1]["body"]["messages"][0]["content"]
    assert sent == "my email is [REDACTED:email] ok"
    assert r.json()["choices"][0]["message"]["content"] == "my email is [REDACTED:email] ok"


def test_multipart_and_tool_arguments_are_moderated(client, fake):
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:,"}},
             {"type": "text", "text": "VIOLATE:VIOLENCE"}]
    assert chat(client, parts).status_code == 400
    r = chat(client, "VIOLATE:VIOLENCE", model="tools")  # the input check still blocks first
    assert r.status_code == 400
    # tool-call arguments in the reply: the fake puts the user text in the arguments
    r = chat(client, "mail eve@x.io", model="tools")
    args = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert "eve@x.io" not in args


def test_n_choices_each_moderated(client):
    r = chat(client, "x", model="say:VIOLATE%3AREPLACE", n=2)
    assert [c["message"]["content"] for c in r.json()["choices"]] == ["[removed by policy]"] * 2


def test_streaming_allowed_equals_upstream_text_with_usage(client):
    text = "The quick brown fox jumps over the lazy dog, again and again and again."
    with client.stream("POST", "/v1/chat/completions", json={
        "model": "echo", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": text}]}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    got = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert got == text
    assert any(c.get("usage") for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == ["stop"]


def test_streaming_block_midway_never_leaks(client):
    safe = "a" * 80
    text = safe + " VIOLATE:VIOLENCE " + "b" * 80
    model = "say:" + text.replace(":", "%3A").replace(" ", "%20")
    with client.stream("POST", "/v1/chat/completions", json={
        "model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    chunks = [orjson.loads(e) for e in events[:-1]]
    got = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert "VIOLATE" not in got.replace("Blocked by VIOLENCE.", "")
    assert "b" not in got.replace("Blocked by VIOLENCE.", "")
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(
    "send, status, code",
    [
        (dict(content=b"{not json"), 400, None),
        (dict(json={"model": "echo"}), 400, None),
        (dict(json={"model": "echo", "messages": "hi"}), 400, None),
        (dict(json={"model": 3, "messages": [{"role": "user", "content": "x"}]}), 400, None),
        (dict(json={"model": "echo", "messages": [{"role": "user", "content": 5}]}), 400, None),
        (dict(json=[1, 2]), 400, None),
    ],
)
def test_bad_input_gets_openai_error(client, send, status, code):
    r = client.post("/v1/chat/completions", **send)
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_route_and_method(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_body_too_large(tmp_path, policies_path, fake):
    with make_client(tmp_path, policies_path, fake, max_body_bytes=1000) as c:
        r = chat(c, "x" * 5000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("model, status", [("error", 502), ("garbage", 502), ("bad", 400)])
def test_upstream_failures(client, model, status):
    r = chat(client, "hello", model=model)
    assert r.status_code == status
    assert "error" in r.json()
    if model == "bad":
        assert r.json()["error"]["message"] == "upstream says no"  # relayed as is


def test_upstream_refused_is_502(tmp_path, policies_path):
    settings = Settings(policies=policies_path, upstream="http://127.0.0.1:9/v1", block_log=tmp_path / "b.jsonl")
    with TestClient(create_app(settings, guard=ScriptedGuard())) as c:
        r = chat(c, "hello")
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"


def test_gateway_keys(tmp_path, policies_path, fake):
    keys = [GatewayKey(id="team-a", key="gw-key-aaa")]
    with make_client(tmp_path, policies_path, fake, gateway_keys=keys) as c:
        r = chat(c, "hello")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = c.post("/v1/chat/completions", headers={"authorization": "Bearer wrong"},
                   json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401
        r = c.post("/v1/chat/completions", headers={"authorization": "Bearer gw-key-aaa"},
                   json={"model": "echo", "messages": [{"role": "user", "content": "VIOLATE:FLAGME"}]})
        assert r.status_code == 200
        assert fake.state.calls[-1]["headers"]["authorization"] == "Bearer sk-upstream-secret-XYZ"
    lines = log_lines(tmp_path)
    assert [(x["direction"], x["decision"], x["key_id"]) for x in lines] == [
        ("input", "flag", "team-a"), ("output", "flag", "team-a")]
    raw = (tmp_path / "blocks.jsonl").read_text()
    assert "gw-key-aaa" not in raw and "sk-upstream-secret-XYZ" not in raw


def test_health_ready_models_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["guard"] == "scripted"
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["echo", "tools", "slow"]
    chat(client, "VIOLATE:VIOLENCE")
    text = client.get("/metrics").text
    assert 'rsafe_decisions_total{action="block",direction="input",policy="VIOLENCE"} 1.0' in text


def test_guard_failure_blocks_and_logs(client, tmp_path):
    r = chat(client, "GUARD_CRASH")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    (line,) = log_lines(tmp_path, client)
    assert line["decision"] == "error" and "unreadable" in line["error"]


def test_invalid_reload_keeps_serving_and_readyz_says_so(client, policies_path):
    import asyncio

    policies_path.write_text("policies:\n  - id: A\n    action: nope\n")
    gw = client.app.state.gateway
    client.portal.call(gw.store.reload_if_changed)
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded" and "policies.0.action" in ready["last_reload_error"]
    assert chat(client, "VIOLATE:VIOLENCE").status_code == 400  # old policies still enforced
    _ = asyncio


def test_stream_holdback_is_measured(client):
    text = "held back and released after the guard, " * 4
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "echo", "stream": True, "messages": [{"role": "user", "content": text}]}) as r:
        list(r.iter_lines())
    metrics = client.get("/metrics").text
    count = [line for line in metrics.splitlines() if line.startswith("rsafe_stream_holdback_seconds_count")]
    assert count and float(count[0].split()[-1]) >= 2
