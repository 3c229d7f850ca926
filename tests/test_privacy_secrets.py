"""Privacy: the upstream key, the gateway keys and the admin key never appear in the block
log, the process logs, /metrics or the web view; content is logged only when turned on."""

from __future__ import annotations

import hashlib

import orjson
from starlette.testclient import TestClient

from gateway.blocklog import reader as logread
from gateway.settings import GatewayKey
from tests._admin_support import ADMIN_KEY, GATEWAY_KEY, UPSTREAM_KEY, admin_app
from tests.conftest import TEST_POLICIES

OTHER_GATEWAY_KEY = "gw-key-second-Tb55-never-shown"
SECRETS = (UPSTREAM_KEY, GATEWAY_KEY, OTHER_GATEWAY_KEY, ADMIN_KEY)
USER_TEXT = "VIOLATE:VIOLENCE my private diary entry 4417"


def traffic(c: TestClient) -> None:
    auth = {"authorization": f"Bearer {GATEWAY_KEY}"}

    def chat(content, model="echo", headers=auth, **extra):
        return c.post("/v1/chat/completions", headers=headers,
                      json={"model": model, "messages": [{"role": "user", "content": content}], **extra})

    assert chat("hello").status_code == 200
    assert chat(USER_TEXT).status_code == 400
    assert chat(f"here is a key: {GATEWAY_KEY}").status_code == 200
    assert chat("x", model="say:VIOLATE%3AVIOLENCE").status_code == 200
    assert chat("GUARD_CRASH").status_code == 400
    assert chat("VIOLATE:FLAGME").status_code == 200
    assert chat("x", model="error").status_code >= 500
    assert chat("x", model="bad").status_code == 400
    assert chat("hello", headers={"authorization": "Bearer wrong-key"}).status_code == 401
    assert chat("hello", headers={"authorization": f"Bearer {OTHER_GATEWAY_KEY}"}).status_code == 200
    with c.stream("POST", "/v1/chat/completions", headers=auth, json={
            "model": "say:VIOLATE%3AVIOLENCE%20in%20a%20long%20enough%20streamed%20reply", "stream": True,
            "messages": [{"role": "user", "content": "go"}]}) as r:
        b"".join(r.iter_bytes())


def everything_visible(c: TestClient, log) -> str:
    """Every byte an operator can see: log files, /metrics, /readyz, every admin page."""
    parts = [f.read_bytes().decode() for f in logread.log_files(log)]
    parts.append(c.get("/metrics").text)
    parts.append(c.get("/readyz").text)
    admin = {"x-admin-key": ADMIN_KEY}
    parts.append(c.get("/admin", headers=admin).text)
    parts.append(c.get("/admin/api/decisions?limit=500", headers=admin).text)
    parts.append(c.get("/admin", headers=admin, params={"decision": "error"}).text)
    for r in logread.iter_oldest(log):
        parts.append(c.get(f"/admin/request/{r['request_id']}", headers=admin).text)
    login = c.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False)
    parts.append(str(login.headers))
    return "\n".join(parts)


def make(tmp_path, upstream_url, log_content: bool):
    policies = tmp_path / "policies.yaml"
    text = TEST_POLICIES.replace("settings:\n", f"settings:\n  log_content: {str(log_content).lower()}\n  log_allowed: true\n")
    policies.write_text(text)
    keys = [GatewayKey(id="team-a", key=GATEWAY_KEY), GatewayKey(id="team-b", key=OTHER_GATEWAY_KEY)]
    return admin_app(tmp_path, policies, upstream_url, gateway_keys=keys)


def test_no_key_anywhere_and_no_content_by_default(tmp_path, upstream_url, capfd):
    app = make(tmp_path, upstream_url, log_content=False)
    log = tmp_path / "logs" / "blocks.jsonl"
    with TestClient(app, raise_server_exceptions=False) as c:
        traffic(c)
    with TestClient(app, raise_server_exceptions=False) as c:  # the first shutdown flushed the log writer
        visible = everything_visible(c, log)
    out, err = capfd.readouterr()
    visible += out + err
    records = list(logread.iter_oldest(log))
    assert len(records) >= 8 and {r["key_id"] for r in records} == {"team-a", "team-b"}
    for secret in SECRETS:
        assert secret not in visible, f"a key leaked: {secret[:10]}..."
    assert "diary entry 4417" not in visible  # content stays out unless the operator turns it on
    blocked = next(r for r in records if r["decision"] == "block" and r["direction"] == "input"
                   and r["content_len"] == len(USER_TEXT))
    assert "content" not in blocked
    assert blocked["content_sha256"] == "sha256:" + hashlib.sha256(USER_TEXT.encode()).hexdigest()[:16]


def test_content_is_logged_only_when_turned_on(tmp_path, upstream_url):
    """The scan above would see content if it were written: with log_content on, it is."""
    app = make(tmp_path, upstream_url, log_content=True)
    log = tmp_path / "logs" / "blocks.jsonl"
    with TestClient(app, raise_server_exceptions=False) as c:
        traffic(c)
    with TestClient(app, raise_server_exceptions=False) as c:
        detail_pages = everything_visible(c, log)
    lines = [orjson.loads(x) for x in log.read_bytes().splitlines()]
    assert any(r.get("content") == USER_TEXT for r in lines)
    assert "diary entry 4417" in detail_pages
    for secret in (UPSTREAM_KEY, ADMIN_KEY):
        assert secret not in detail_pages
