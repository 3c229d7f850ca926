"""The `/admin` web view: recent decisions with filters, one request in detail (with the
guard's reasoning), blocks per policy over time, and the policies in force.

Off unless `settings.admin_key` (RSAFE_ADMIN_KEY) is set: every /admin route then answers
404 like an unknown route. With a key, a request is let in when it carries the key in an
`x-admin-key` header (or `Authorization: Bearer`), or the session cookie the login form
sets. The cookie holds an HMAC of the key, never the key itself, and is HttpOnly,
SameSite=Strict and scoped to /admin.

Fast with a large log: the table reads the log from its end and stops after one page
(`logread.recent`); the chart reads an incremental per-file index (`logindex.BlockIndex`)
that only looks at bytes written since the previous page load. Both run in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway import admin_html as ui
from gateway import logread
from gateway.logindex import index_for

COOKIE = "rsafe_admin"
PAGE_SIZE = 50
SCAN_BUDGET_S = 2.0  # a filter that matches nothing recent must not scan a huge log for long
CHART_HOURS = {"24h": 24, "7d": 168}


def admin_routes() -> list[Route]:
    """Register these in `create_app` (they are inert until an admin key is configured)."""
    return [
        Route("/admin", index, methods=["GET"], name="admin"),
        Route("/admin/login", login, methods=["POST"], name="admin_login"),
        Route("/admin/logout", logout, methods=["GET", "POST"], name="admin_logout"),
        Route("/admin/request/{request_id}", detail, methods=["GET"], name="admin_request"),
        Route("/admin/api/decisions", api_decisions, methods=["GET"], name="admin_api_decisions"),
    ]


# --- access ------------------------------------------------------------------------------
def _admin_key(request: Request) -> str:
    key = request.app.state.gateway.settings.admin_key
    if key is None or not key.get_secret_value():
        raise HTTPException(404)  # the view does not exist without a key
    return key.get_secret_value()


def session_token(key: str) -> str:
    return hmac.new(key.encode(), b"rsafe-admin-session-v1", hashlib.sha256).hexdigest()


def _authorized(request: Request, key: str) -> bool:
    supplied = request.headers.get("x-admin-key")
    auth = request.headers.get("authorization") or ""
    if not supplied and auth.lower().startswith("bearer "):
        supplied = auth[7:].strip()
    if supplied and secrets.compare_digest(supplied.encode(), key.encode()):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and secrets.compare_digest(cookie.encode(), session_token(key).encode())


def _html(body_fn, status: int = 200) -> Response:
    """An HTML response with a per-response script nonce and a strict content security policy."""
    nonce = secrets.token_urlsafe(16)
    response = HTMLResponse(body_fn(nonce), status)
    response.headers["content-security-policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["cache-control"] = "no-store"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-content-type-options"] = "nosniff"
    return response


def _login(error: str | None = None, status: int = 401) -> Response:
    return _html(lambda nonce: ui.login_page(error, nonce), status)


async def login(request: Request) -> Response:
    key = _admin_key(request)
    body = (await request.body())[:4096].decode("utf-8", "replace")
    supplied = (parse_qs(body).get("key") or [""])[0]
    if not supplied or not secrets.compare_digest(supplied.encode(), key.encode()):
        return _login("That is not the admin key.")
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(COOKIE, session_token(key), httponly=True, samesite="strict", path="/admin",
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    _admin_key(request)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


# --- data --------------------------------------------------------------------------------
def _query(request: Request) -> dict[str, str]:
    names = ("policy", "decision", "direction", "since", "model", "key", "request", "before", "chart")
    return {n: request.query_params.get(n, "").strip()[:200] for n in names}


def _filter(q: dict[str, str]) -> logread.Filter:
    try:
        since = logread.parse_time(q["since"]) if q["since"] else None
    except ValueError:
        since = None
    return logread.Filter(
        policies=(q["policy"],) if q["policy"] else (), decisions=(q["decision"],) if q["decision"] else (),
        directions=(q["direction"],) if q["direction"] else (), models=(q["model"],) if q["model"] else (),
        key_ids=(q["key"],) if q["key"] else (), request_id=q["request"] or None,
        since=since, until=q["before"] or None,
    )


def _newest_first(path, filt: logread.Filter, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` records, newest first, within the scan budget. Returns them and, when
    the budget stopped the scan, the timestamp it got back to (to continue from)."""
    budget = logread.Budget(SCAN_BUDGET_S)
    out = []
    for record in logread.iter_newest(path, filt, budget):
        out.append(record)
        if len(out) >= limit:
            break
    return out, budget.reached_ts


def _policies_info(request: Request) -> dict[str, Any]:
    gw = request.app.state.gateway
    store = gw.store
    return {
        "version": store.current.version,
        "path": str(store.path),
        "loaded_at": datetime.fromtimestamp(store.loaded_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "last_error": store.last_error,
        "reloads": dict(store.reloads),
        "guard": getattr(gw.moderator.model_guard, "name", None),
        "policies": list(store.current.policies),
    }


def _chart(request: Request, path, hours: int, policy: str) -> str:
    index = index_for(request.app.state, path)
    index.refresh(hours * 3600)
    now = datetime.now(timezone.utc)
    since_hour = (now.timestamp() - hours * 3600)
    blocks = index.blocks(datetime.fromtimestamp(since_hour, timezone.utc).strftime("%Y-%m-%dT%H"))
    if policy:
        blocks = {h: type(c)({policy: c[policy]}) for h, c in blocks.items() if c.get(policy)}
    return ui.chart_svg(blocks, hours, now)


# --- pages -------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    key = _admin_key(request)
    if not _authorized(request, key):
        return _login()
    gw = request.app.state.gateway
    path = gw.settings.block_log
    q = _query(request)
    filt = _filter(q)
    hours = CHART_HOURS.get(q["chart"], 24)
    records, reached = await asyncio.to_thread(_newest_first, path, filt, PAGE_SIZE + 1)
    more = (records[PAGE_SIZE - 1].get("ts") or "") if len(records) > PAGE_SIZE else reached
    records = records[:PAGE_SIZE]
    chart = await asyncio.to_thread(_chart, request, path, hours, q["policy"])
    info = _policies_info(request)
    policy_ids = [p.id for p in info["policies"]]
    if q["policy"] and q["policy"] not in policy_ids:
        policy_ids.append(q["policy"])
    window = " · ".join(
        (f"<b>{w}</b>" if CHART_HOURS[w] == hours else
         f'<a href="/admin?{ui._e(_with(q, chart=w))}">{w}</a>') for w in CHART_HOURS
    )
    body = (
        f'<section><h2>Blocks per policy per hour{" — " + ui._e(q["policy"]) if q["policy"] else ""} '
        f'<span class="muted">({window})</span></h2>{chart}</section>'
        f'<section><h2>Recent decisions</h2>{ui.filters_form(q, policy_ids)}'
        f'{ui.decisions_table(records, q, more, searched_to=reached if len(records) < PAGE_SIZE else None)}</section>'
        f'<section><h2>Policies in force</h2>{ui.policies_panel(info)}</section>'
    )
    return _html(lambda nonce: ui.page("block log", body, nonce))


def _with(q: dict[str, str], **changes: str) -> str:
    return urlencode({k: v for k, v in {**q, **changes}.items() if v})


async def detail(request: Request) -> Response:
    key = _admin_key(request)
    if not _authorized(request, key):
        return _login()
    request_id = request.path_params["request_id"][:200]
    path = request.app.state.gateway.settings.block_log
    records = await asyncio.to_thread(logread.find_request, path, request_id)
    body = ui.detail_body(request_id, records)
    return _html(lambda nonce: ui.page(request_id, body, nonce), 200 if records else 404)


async def api_decisions(request: Request) -> Response:
    """The same selection as the page, as JSON (for scripts; `limit` up to 500)."""
    key = _admin_key(request)
    if not _authorized(request, key):
        return JSONResponse({"error": "admin key required"}, 401)
    q = _query(request)
    try:
        limit = max(1, min(int(request.query_params.get("limit", PAGE_SIZE)), 500))
    except ValueError:
        limit = PAGE_SIZE
    path = request.app.state.gateway.settings.block_log
    records, reached = await asyncio.to_thread(_newest_first, path, _filter(q), limit)
    return JSONResponse({"decisions": records, "searched_to": reached}, headers={"cache-control": "no-store"})
