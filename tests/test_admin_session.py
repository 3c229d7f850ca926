"""The /admin session and its brakes over real HTTP (uvicorn on loopback, httpx): bad time and
limit parameters are 400s, refusals are OpenAI-shaped JSON, wrong keys are rate limited per
address with Retry-After, and the session cookie is a signed, expiring, revocable token.
Also the `rsafe logs` command line on the same durations."""

from __future__ import annotations

import time

import httpx
import pytest
import typer
from typer.testing import CliRunner

from gateway.admin import auth as admin_auth
from gateway.admin.auth import COOKIE, FailureLimiter, issue_session, read_session
from gateway.blocklog.cli import logs_app
from tests._admin_support import ADMIN_KEY, admin_app
from tests.fakes.blocklogs import write_log
from tests.servers import serve

KEY = {"x-admin-key": ADMIN_KEY}
HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def start(tmp_path, policies_path, upstream_url):
    """start(**settings) -> an httpx client on a fresh gateway (its own limiter)."""
    write_log(tmp_path / "logs" / "blocks.jsonl", 50)
    stack = []

    def _start(**overrides) -> httpx.Client:
        server = serve(admin_app(tmp_path, policies_path, upstream_url, **overrides))
        url = server.__enter__()
        client = httpx.Client(base_url=url, timeout=30)
        stack.append((server, client))
        return client

    yield _start
    for server, client in stack:
        client.close()
        server.__exit__(None, None, None)


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize("path", ["/admin", "/admin/api/decisions"])
@pytest.mark.parametrize("param,value", [
    ("since", "99999999999h"), ("since", "9" * 190 + "d"), ("since", "0001-01-01T00:00+05:00"),
    ("since", "yesterday"), ("before", "99999999999w"), ("before", "2026-13-45"),
])
def test_out_of_range_or_malformed_times_are_400(start, path, param, value):
    c = start()
    error = openai_error(c.get(path, params={param: value}, headers=KEY), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert c.get("/healthz").status_code == 200


def test_limit_must_be_an_integer_from_1_to_500(start):
    c = start()
    for bad in ("0", "-3", "501", "99999999999999999999999", "ten", "1.5", ""):
        error = openai_error(c.get("/admin/api/decisions", params={"limit": bad}, headers=KEY), 400)
        assert error["param"] == "limit"
    ok = c.get("/admin/api/decisions", params={"limit": "7", "since": "30d"}, headers=KEY)
    assert ok.status_code == 200 and len(ok.json()["decisions"]) == 7


def test_refusals_are_openai_json_and_the_browser_gets_the_login_page(start):
    c = start()
    for path in ("/admin", "/admin/api/decisions", "/admin/request/req_x"):
        assert openai_error(c.get(path), 401)["code"] == "invalid_api_key"
    assert "not the admin key" in openai_error(c.post("/admin/login", data={"key": "wrong"}), 401)["message"]
    page = c.get("/admin", headers=HTML)
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert "Admin key required" in page.text


def test_wrong_keys_back_off_with_retry_after_then_recover(start, monkeypatch):
    monkeypatch.setattr(admin_auth, "LOGIN_REFILL_S", 1.5)
    c = start()
    for _ in range(admin_auth.LOGIN_BURST):
        assert c.post("/admin/login", data={"key": "guess"}).status_code == 401
    for attempt in (lambda: c.post("/admin/login", data={"key": "guess"}),
                    lambda: c.get("/admin", headers={"x-admin-key": "guess"}),
                    lambda: c.post("/admin/login", data={"key": ADMIN_KEY}),  # right or wrong: nothing learnt
                    lambda: c.get("/admin", headers=KEY)):
        r = attempt()
        error = openai_error(r, 429)
        assert error["code"] == "rate_limit_exceeded" and 1 <= int(r.headers["retry-after"]) <= 2
    browser = c.post("/admin/login", data={"key": "guess"}, headers=HTML)
    assert browser.status_code == 429 and "try again in" in browser.text and browser.headers["retry-after"]
    assert c.get("/admin").status_code == 401  # no key offered: not a guess, not limited
    time.sleep(1.6)  # one try refilled
    assert c.get("/admin", headers=KEY).status_code == 200
    for _ in range(admin_auth.LOGIN_BURST):  # the right key reset the bucket
        assert c.get("/admin", headers={"x-admin-key": "guess"}).status_code == 401
    assert c.get("/admin", headers={"x-admin-key": "guess"}).status_code == 429


def test_a_session_survives_the_back_off(start):
    c = start()
    assert c.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False).status_code == 303
    with httpx.Client(base_url=str(c.base_url)) as attacker:  # same address, no cookie
        for _ in range(admin_auth.LOGIN_BURST + 1):
            attacker.post("/admin/login", data={"key": "guess"})
        assert attacker.post("/admin/login", data={"key": "guess"}).status_code == 429
    assert c.get("/admin").status_code == 200


def test_the_session_cookie_is_a_signed_expiring_token(start):
    c = start(admin_session_hours=2)
    r = c.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False)
    header = r.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/admin" in header
    assert "Max-Age=7200" in header and "Secure" not in header and ADMIN_KEY not in header
    token = r.cookies[COOKIE]
    version, issued, expires, nonce, sig = token.split(".")
    assert version == "v2" and int(expires) - int(issued) == 7200 and abs(int(issued) - time.time()) < 60
    again = c.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False).cookies[COOKIE]
    assert again != token  # a random nonce: not a constant of the key
    assert c.get("/admin").status_code == 200

    def with_cookie(value: str) -> httpx.Response:
        return httpx.get(f"{c.base_url}/admin", headers={"cookie": f"{COOKIE}={value}"})

    assert with_cookie(token).status_code == 200
    forged = [
        f"{version}.{issued}.{int(expires) + 10**6}.{nonce}.{sig}",  # a longer expiry
        f"{version}.{int(issued) + 3600}.{expires}.{nonce}.{sig}",
        f"{version}.{issued}.{expires}.{nonce}x.{sig}",
        f"{version}.{issued}.{expires}.{nonce}.{sig[:-1]}{'1' if sig[-1] == '0' else '0'}",  # one hex digit off
        issue_session("another-key", 7200),
        issue_session(ADMIN_KEY, 7200, now=time.time() - 7201),  # expired
        issue_session(ADMIN_KEY, 10 * 3600, now=time.time() - 3 * 3600),  # within its own expiry, past the setting
        "v1.a.b.c.d", "", "%ff%fe",
    ]
    for value in forged:
        error = openai_error(with_cookie(value), 401)
        assert error["code"] == "invalid_api_key"
    assert "expired" in with_cookie(forged[5]).json()["error"]["message"]
    assert with_cookie(issue_session(ADMIN_KEY, 7200, now=time.time() - 7000)).status_code == 200


def test_logout_revokes_the_token(start):
    c = start()
    token = c.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False).cookies[COOKIE]
    logout = c.get("/admin/logout", follow_redirects=False)
    assert logout.status_code == 303 and f'{COOKIE}=""' in logout.headers["set-cookie"]
    r = httpx.get(f"{c.base_url}/admin", headers={"cookie": f"{COOKIE}={token}"})  # a copy kept by someone
    assert r.status_code == 401


def test_secure_flag_when_served_over_tls(start):
    c = start()  # uvicorn trusts X-Forwarded-Proto from loopback: a TLS-terminating proxy in front
    r = c.post("/admin/login", data={"key": ADMIN_KEY}, headers={"x-forwarded-proto": "https"},
               follow_redirects=False)
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_limiter_groups_ipv6_by_64_and_forgets_the_oldest():
    now = [0.0]
    limiter = FailureLimiter(burst=2, refill_s=10, max_addresses=3, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("a")
    assert limiter.retry_after("a") == 10 and limiter.retry_after("b") is None
    now[0] = 5.0
    assert limiter.retry_after("a") == 5
    for name in ("b", "c", "d"):
        limiter.failed(name)
    assert limiter.retry_after("a") is None  # dropped: memory stays bounded
    assert read_session(issue_session("k", 60, now=100), "k", 60, now=159) is not None
    assert read_session(issue_session("k", 60, now=100), "k", 60, now=160) is None

    from starlette.requests import Request

    def address(host: str) -> str:
        return admin_auth.client_address(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert address("2001:db8::1") == address("2001:db8::ffff:1") == "2001:db8::/64"
    assert address("2001:db8:0:1::1") != address("2001:db8::1") and address("10.0.0.1") == "10.0.0.1"


def test_cli_rejects_out_of_range_durations_clearly(tmp_path):
    app = typer.Typer()
    app.add_typer(logs_app, name="logs")
    log = tmp_path / "blocks.jsonl"
    write_log(log, 20, files=2)
    runner = CliRunner()
    for command in (["tail", "--since", "99999999999h"], ["stats", "--until", "9" * 400 + "s"],
                    ["tail", "--until", "0001-01-01T00:00+05:00"]):
        r = runner.invoke(app, ["logs", *command, "--log", str(log)], catch_exceptions=False)
        assert r.exit_code == 2 and "out of range" in r.output and "Traceback" not in r.output, r.output
    files = sorted(tmp_path.iterdir())
    r = runner.invoke(app, ["logs", "prune", "--log", str(log), "--days", "-1"], catch_exceptions=False)
    assert r.exit_code == 2 and "positive number of days" in r.output
    assert sorted(tmp_path.iterdir()) == files  # a negative period deleted nothing
