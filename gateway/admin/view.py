"""The `/admin` web view: recent decisions with filters, one request in detail (with the
guard's reasoning), blocks per policy over time, and the policies in force.

Off unless `settings.admin_key` (RSAFE_ADMIN_KEY) is set: every /admin route then answers
404 like an unknown route. With a key, a request is let in when it carries the key in an
`x-admin-key` header (or `Authorization: Bearer`), or the signed, expiring session cookie the
login form sets (`gateway/admin/auth.py`: the token, the limit on wrong keys, the refusals).
Bad query parameters (`since`, `before`, `limit`) are a 400, OpenAI-shaped.

Fast with a large log: the table reads the log from its end and stops after one page
(`logread.recent`); the chart reads an incremental per-file index (`logindex.BlockIndex`)
that only looks at bytes written since the previous page load. Both run in a thread.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.admin import html as ui
from gateway.blocklog import reader as logread
from gateway.admin.auth import (COOKIE, admin_key, admin_only, auth_for, check_key, current_session, issue_session,
                                refusal, session_ttl_s)
from gateway.errors import BadRequest, PayloadTooLarge, Unauthorized
from gateway.blocklog.index import index_for

PAGE_SIZE = 50
API_LIMIT_MAX = 500
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


admin = admin_only(_login)
LOGIN_BODY_MAX = 4096


async def _form_key(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_MAX:
            raise PayloadTooLarge(f"a login form is at most {LOGIN_BODY_MAX} bytes")
    return (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0]


async def login(request: Request) -> Response:
    key = admin_key(request)
    supplied = await _form_key(request)
    refused = check_key(request, supplied, key) if supplied else Unauthorized("the form has no admin key")
    if refused is not None:
        return refusal(request, refused, _login, refused.message)
    ttl_s = session_ttl_s(request)
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(COOKIE, issue_session(key, ttl_s), max_age=int(ttl_s), httponly=True, samesite="strict",
                        path="/admin", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    session = current_session(request, admin_key(request))
    if session is not None:
        auth_for(request).revoke(*session)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


# --- data --------------------------------------------------------------------------------
def _query(request: Request) -> dict[str, str]:
    names = ("policy", "decision", "direction", "since", "model", "key", "request", "before", "chart")
    return {n: request.query_params.get(n, "").strip()[:200] for n in names}


def _time(q: dict[str, str], name: str) -> str | None:
    try:
        return logread.parse_time(q[name]) if q[name] else None
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}", param=name) from exc


def _filter(q: dict[str, str]) -> logread.Filter:
    return logread.Filter(
        policies=(q["policy"],) if q["policy"] else (), decisions=(q["decision"],) if q["decision"] else (),
        directions=(q["direction"],) if q["direction"] else (), models=(q["model"],) if q["model"] else (),
        key_ids=(q["key"],) if q["key"] else (), request_id=q["request"] or None,
        since=_time(q, "since"), until=_time(q, "before"),
    )


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= API_LIMIT_MAX:
        raise BadRequest(f"limit: an integer from 1 to {API_LIMIT_MAX}, not {raw[:40]!r}", param="limit")
    return limit


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
        "guard": gw.moderator.guard_name,
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
@admin
async def index(request: Request) -> Response:
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


@admin
async def detail(request: Request) -> Response:
    request_id = request.path_params["request_id"][:200]
    path = request.app.state.gateway.settings.block_log
    records = await asyncio.to_thread(logread.find_request, path, request_id)
    body = ui.detail_body(request_id, records)
    return _html(lambda nonce: ui.page(request_id, body, nonce), 200 if records else 404)


@admin
async def api_decisions(request: Request) -> Response:
    """The same selection as the page, as JSON (for scripts; `limit` from 1 to 500)."""
    q = _query(request)
    limit = _limit(request)
    path = request.app.state.gateway.settings.block_log
    records, reached = await asyncio.to_thread(_newest_first, path, _filter(q), limit)
    return JSONResponse({"decisions": records, "searched_to": reached}, headers={"cache-control": "no-store"})
