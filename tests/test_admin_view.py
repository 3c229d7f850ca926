"""The /admin view in-process: off without a key, the key required, filters, detail, chart,
policies in force, escaping, and the incremental chart index across rotation."""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.admin.auth import COOKIE
from gateway.app import create_app
from gateway.blocklog.index import BlockIndex
from gateway.settings import Settings
from tests._admin_support import ADMIN_KEY, admin_app, with_admin
from tests.fakes.blocklogs import record, write_log
from tests.fakes.guard import ScriptedGuard


@pytest.fixture
def client(tmp_path, policies_path, upstream_url):
    write_log(tmp_path / "logs" / "blocks.jsonl", 400, files=2,
              start=datetime.now(timezone.utc) - timedelta(hours=10), step_s=60)
    with TestClient(admin_app(tmp_path, policies_path, upstream_url), raise_server_exceptions=False) as c:
        yield c


def signed_in(c: TestClient) -> TestClient:
    c.headers["x-admin-key"] = ADMIN_KEY
    return c


def test_off_without_an_admin_key(tmp_path, policies_path, monkeypatch):
    monkeypatch.delenv("RSAFE_ADMIN_KEY", raising=False)
    settings = Settings(policies=policies_path, block_log=tmp_path / "b.jsonl")
    assert settings.admin_key is None
    with TestClient(with_admin(create_app(settings, guard=ScriptedGuard()))) as c:
        for path in ("/admin", "/admin/request/req_x", "/admin/api/decisions"):
            assert c.get(path, headers={"x-admin-key": "anything"}).status_code == 404
        assert c.post("/admin/login", data={"key": "anything"}).status_code == 404


def test_key_required(client):
    r = client.get("/admin")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key" and 'id="decisions"' not in r.text
    page = client.get("/admin", headers={"accept": "text/html"})  # a browser gets the login page
    assert page.status_code == 401 and "Admin key required" in page.text and 'id="decisions"' not in page.text
    assert client.get("/admin/api/decisions").json()["error"]["type"] == "invalid_request_error"
    assert client.get("/admin", headers={"x-admin-key": "wrong"}).status_code == 401
    assert client.get("/admin", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    assert client.get("/admin", headers={"x-admin-key": ADMIN_KEY}).status_code == 200
    client.cookies.set(COOKIE, "forged")
    assert client.get("/admin").status_code == 401


def test_login_form_sets_a_signed_session_cookie_not_the_key(client):
    r = client.post("/admin/login", data={"key": "nope"}, headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 401 and "not the admin key" in r.text
    r = client.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = r.headers["set-cookie"]
    assert ADMIN_KEY not in cookie and f"{COOKIE}=v2." in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert client.get("/admin").status_code == 200
    client.get("/admin/logout")
    assert client.get("/admin").status_code == 401


def test_page_has_decisions_chart_and_policies(client):
    r = signed_in(client).get("/admin")
    assert r.status_code == 200
    assert "script-src 'nonce-" in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    nonce = re.search(r"'nonce-([^']+)'", r.headers["content-security-policy"]).group(1)
    assert f'<script nonce="{nonce}">' in r.text
    assert r.text.count("<tr data-href") == 50 and 'id="older"' in r.text
    assert r.text.count('class="bar"') > 5
    for pid in ("VIOLENCE", "FLAGME", "SECRETS", "BANNED"):
        assert f"<td>{pid}</td>" in r.text
    assert client.app.state.gateway.policies.version in r.text


def test_filters_select_and_page(client, tmp_path):
    lines = [orjson.loads(x) for x in (tmp_path / "logs" / "blocks.jsonl").read_bytes().splitlines()]
    signed_in(client)
    r = client.get("/admin", params={"policy": "S9", "direction": "output"})
    rows = re.findall(r'<tr data-href="/admin/request/(req_[0-9a-f]+)"', r.text)
    files = sorted((tmp_path / "logs").iterdir(), key=lambda p: p.name, reverse=True)
    everything = [orjson.loads(x) for f in files for x in f.read_bytes().splitlines()]
    want = [x["request_id"] for x in reversed(everything) if "S9" in x["policies"] and x["direction"] == "output"]
    assert rows == want[:50] and rows
    api = client.get("/admin/api/decisions", params={"decision": "fail_open", "limit": 500}).json()["decisions"]
    assert api and all(x["fail_open"] for x in api)
    page2 = client.get("/admin", params={"before": lines[-1]["ts"], "key": "team-a"})
    assert lines[-1]["request_id"] not in page2.text
    rows2 = re.findall(r'data-href="/admin/request/(req_[0-9a-f]+)"', page2.text)
    assert all(x["key_id"] == "team-a" for x in everything if x["request_id"] in rows2) and rows2


def test_detail_shows_reasoning_of_a_real_blocked_request(client):
    r = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "VIOLATE:VIOLENCE <script>alert(1)</script>"}]})
    assert r.status_code == 400
    rid = r.headers["x-request-id"]
    page = signed_in(client).get(f"/admin/request/{rid}")
    assert page.status_code == 200
    assert '<pre class="reasoning">scripted: VIOLENCE</pre>' in page.text
    assert client.get("/admin/request/req_missing").status_code == 404
    listing = client.get("/admin", params={"policy": "VIOLENCE"}).text
    assert f'data-href="/admin/request/{rid}" data-decision="block"' in listing


def test_everything_from_the_log_is_escaped(client, tmp_path):
    log = tmp_path / "logs" / "blocks.jsonl"
    evil = record(99999, random.Random(1), datetime.now(timezone.utc), request_id="req_evil",
                  reasoning='<img src=x onerror=alert(1)> "quoted"', model="<b>m</b>", content="<script>x()</script>")
    with open(log, "ab") as fh:
        fh.write(orjson.dumps(evil) + b"\n")
    signed_in(client)
    for path in ("/admin", "/admin/request/req_evil"):
        text = client.get(path).text
        assert "<img src=x" not in text and "<b>m</b>" not in text and "<script>x()" not in text
    detail = client.get("/admin/request/req_evil").text
    assert "&lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot;" in detail


def test_reload_error_is_shown(client, policies_path):
    import asyncio
    import time

    time.sleep(0.01)
    policies_path.write_text("version: 1\npolicies:\n  - id: S1\n    action: obliterate\n")
    store = client.app.state.gateway.store
    asyncio.run(store.reload_if_changed())
    text = signed_in(client).get("/admin").text
    assert 'id="reload-error"' in text and "policies.0.action" in text


def test_block_index_is_incremental_and_survives_rotation(tmp_path):
    path = tmp_path / "blocks.jsonl"
    now = datetime.now(timezone.utc)
    hour = now.strftime("%Y-%m-%dT%H")

    def block(policy: str) -> bytes:
        return orjson.dumps({"ts": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "decision": "block",
                             "outcomes": [{"policy": policy, "action": "block", "reason": "violated"}]}) + b"\n"

    path.write_bytes(block("A") * 3 + block("B"))
    index = BlockIndex(path)
    index.refresh()
    assert index.blocks(hour)[hour] == {"A": 3, "B": 1}
    with open(path, "ab") as fh:
        fh.write(block("A") + block("B")[:20])  # half a line: counted once complete
    index.refresh()
    assert index.blocks(hour)[hour] == {"A": 4, "B": 1}
    with open(path, "ab") as fh:
        fh.write(block("B")[20:])
    index.refresh()
    assert index.blocks(hour)[hour] == {"A": 4, "B": 2}
    os.rename(path, tmp_path / "blocks.jsonl.1")  # rotation: same inode, counts carry over
    path.write_bytes(block("C"))
    index.refresh()
    assert index.blocks(hour)[hour] == {"A": 4, "B": 2, "C": 1}
    os.unlink(tmp_path / "blocks.jsonl.1")  # pruned: its counts go with it
    index.refresh()
    assert index.blocks(hour)[hour] == {"C": 1}
    assert index.blocks("9999")[hour] == {}


def test_a_filter_matching_nothing_stops_on_its_time_budget(client, monkeypatch):
    from gateway.admin import view as admin

    monkeypatch.setattr(admin, "SCAN_BUDGET_S", 0.0)
    text = signed_in(client).get("/admin", params={"policy": "BANNED"}).text
    assert 'id="no-decisions"' in text and "Searched back to" in text and 'id="older"' in text
