"""Who may see `/admin`: the admin key, a signed expiring session, and a brake on guessing.

- The key comes in an `x-admin-key` header or `Authorization: Bearer` (scripts), or once
  through the login form, which then sets a session cookie.
- The cookie is a signed token `v2.<issued>.<expires>.<nonce>.<hmac>`: the issue time, the
  expiry (`settings.admin_session_hours`, 12 h by default) and a random nonce, signed with
  HMAC-SHA256 under a key derived from the admin key (changing the key ends every session).
  It never holds the key. A forged, altered or expired token is refused; the expiry is also
  re-checked against the *current* setting, so lowering it shortens sessions already issued.
  Logging out revokes the token's nonce in this process.
- Wrong keys are limited per client address (IPv6: per /64) by a token bucket: `LOGIN_BURST`
  failures, then one more try per `LOGIN_REFILL_S`; while a client is out of tries every key it
  sends is answered 429 with `Retry-After`, right or wrong, so guessing learns nothing.
  A valid session cookie is not a guess and is never limited.

Refusals are OpenAI-shaped JSON (`gateway/errors.py`), or the HTML login page when the
request asks for HTML (a browser).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import RateLimited, Unauthorized

COOKIE = "rsafe_admin"
VERSION = "v2"
LOGIN_BURST = 5  # wrong keys in a row before the back-off
LOGIN_REFILL_S = 60.0  # then one more try per minute
MAX_ADDRESSES = 10_000  # addresses remembered by the limiter (least recently failing dropped first)
CLOCK_SKEW_S = 60

Handler = Callable[[Request], Awaitable[Response]]


# --- the session token ---------------------------------------------------------------------
def _signing_key(admin_key: str) -> bytes:
    return hmac.new(admin_key.encode(), b"rsafe-admin-session-signing-v2", hashlib.sha256).digest()


def _sign(admin_key: str, payload: str) -> str:
    return hmac.new(_signing_key(admin_key), payload.encode(), hashlib.sha256).hexdigest()


def issue_session(admin_key: str, ttl_s: float, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    payload = f"{VERSION}.{issued}.{issued + math.ceil(ttl_s)}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_sign(admin_key, payload)}"


def read_session(token: str | None, admin_key: str, ttl_s: float, now: float | None = None) -> tuple[str, int] | None:
    """(nonce, expires) of a valid unexpired token signed under `admin_key`, else None."""
    parts = (token or "").split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return None
    payload = ".".join(parts[:4])
    if not hmac.compare_digest(parts[4].encode("utf-8", "replace"), _sign(admin_key, payload).encode()):
        return None
    issued, expires = int(parts[1]), int(parts[2])  # signed by us: well-formed
    now = time.time() if now is None else now
    if not issued - CLOCK_SKEW_S <= now < min(expires, issued + ttl_s):
        return None
    return parts[3], expires


def _key_matches(supplied: str, key: str) -> bool:
    """Constant time, and without leaking the key's length (both sides hashed first)."""
    digest = hashlib.sha256
    return hmac.compare_digest(digest(supplied.encode("utf-8", "replace")).digest(), digest(key.encode()).digest())


# --- the brake on guessing ------------------------------------------------------------------
class FailureLimiter:
    """A token bucket per client address, spent by failures only."""

    def __init__(self, burst: int = LOGIN_BURST, refill_s: float = LOGIN_REFILL_S,
                 max_addresses: int = MAX_ADDRESSES, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_s, self.max_addresses, self.clock = burst, refill_s, max_addresses, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill_s)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it may now."""
        tokens = self._tokens(address, self.clock())
        return None if tokens >= 1 else max(1, math.ceil((1 - tokens) * self.refill_s))

    def failed(self, address: str) -> None:
        now = self.clock()
        self._buckets[address] = (max(0.0, self._tokens(address, now) - 1), now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._buckets.pop(address, None)


class AdminAuth:
    """Per app (kept on `app.state`): the limiter and the nonces revoked by logging out."""

    def __init__(self) -> None:
        self.limiter = FailureLimiter(LOGIN_BURST, LOGIN_REFILL_S)
        self.revoked: dict[str, int] = {}  # nonce -> expires (dropped once expired)

    def revoke(self, nonce: str, expires: int) -> None:
        now = time.time()
        self.revoked = {n: e for n, e in self.revoked.items() if e > now}
        self.revoked[nonce] = expires


def auth_for(request: Request) -> AdminAuth:
    state = request.app.state
    auth = getattr(state, "rsafe_admin_auth", None)
    if auth is None:
        auth = state.rsafe_admin_auth = AdminAuth()
    return auth


def client_address(request: Request) -> str:
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


# --- access -------------------------------------------------------------------------------
def admin_key(request: Request) -> str:
    key = request.app.state.gateway.settings.admin_key
    if key is None or not key.get_secret_value():
        raise HTTPException(404)  # the view does not exist without a key
    return key.get_secret_value()


def session_ttl_s(request: Request) -> float:
    return request.app.state.gateway.settings.admin_session_hours * 3600


def current_session(request: Request, key: str) -> tuple[str, int] | None:
    session = read_session(request.cookies.get(COOKIE), key, session_ttl_s(request))
    if session is None or session[0] in auth_for(request).revoked:
        return None
    return session


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def refusal(request: Request, error: Unauthorized | RateLimited, login_page: Callable[..., Response],
            page_message: str | None = None) -> Response:
    """The JSON error, or for a browser the login page with that status (and headers)."""
    if not wants_html(request):
        return error.response()
    response = login_page(page_message, error.status)
    response.headers.update(error.headers())
    return response


def check_key(request: Request, supplied: str, key: str) -> Unauthorized | RateLimited | None:
    """A key presented by a client: None when right; the refusal when wrong or out of tries."""
    limiter, address = auth_for(request).limiter, client_address(request)
    wait = limiter.retry_after(address)
    if wait is not None:
        return RateLimited(f"too many wrong admin keys from this address: try again in {wait} s", retry_after_s=wait)
    if _key_matches(supplied, key):
        limiter.succeeded(address)
        return None
    limiter.failed(address)
    return Unauthorized("That is not the admin key.")


def admin_only(login_page: Callable[..., Response]) -> Callable[[Handler], Handler]:
    """Decorate an /admin handler: it runs only for the admin (key header or session cookie)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            key = admin_key(request)
            if current_session(request, key) is not None:
                return await handler(request)
            supplied = request.headers.get("x-admin-key")
            auth = request.headers.get("authorization") or ""
            if not supplied and auth[:7].lower() == "bearer ":
                supplied = auth[7:].strip()
            if supplied:
                refused = check_key(request, supplied, key)
                if refused is not None:
                    return refusal(request, refused, login_page, refused.message)
                return await handler(request)
            if request.cookies.get(COOKIE):
                refused = Unauthorized("the admin session expired or is not valid: sign in again")
                return refusal(request, refused, login_page, "Your session expired: sign in again.")
            refused = Unauthorized("admin key required: send it as an x-admin-key header or sign in at /admin")
            return refusal(request, refused, login_page)

        return guarded

    return decorate
