"""Pooled keep-alive connections to the upstream: one retry when a stale connection took nothing.

An upstream closes idle keep-alive connections on its own schedule (uvicorn after 5 s, nginx
after 75 s...). aiohttp drops a pooled connection once its event loop has seen the close, but a
close that lands while the loop is busy is not seen yet: the connection is handed out, and the
request fails with `ClientOSError` or `ServerDisconnectedError` (2 in 200,000 requests under load).

The rule (RFC 9112 §9.3.1: a client may retry a non-idempotent request only if it knows the
server did not get it): retry once (the stale connection is closed first) when **no byte of the
request was written**; never after a byte was sent (the upstream might be generating, and billing, it).
`ProbingRequest` knows which case it is in:
- before writing on a connection that carried a request before, it polls the socket: a pooled
  connection has nothing to read unless the upstream closed it (EOF, reset) - then nothing is
  written and `StaleConnection` is raised;
- the request headers wait in aiohttp's writer until the body is written (`write_bytes`, a task
  of its own on Python < 3.12): a transport already closing there has written nothing either.
Otherwise the attempt is marked `written`, and any failure is final.
"""

from __future__ import annotations

import contextvars
import select
import weakref
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp.http_writer import StreamWriter

log = structlog.get_logger("rsafe.gateway")

_ResetError = getattr(aiohttp, "ClientConnectionResetError", aiohttp.ClientOSError)  # aiohttp < 3.10: none
# Failures that can mean "the pooled connection was already closed" (connect errors are not).
STALE_ERRORS = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, _ResetError)


class StaleConnection(_ResetError):  # type: ignore[misc,valid-type]
    """A pooled connection the upstream had closed, found before a byte of the request was written."""


@dataclass(slots=True)
class _Attempt:
    written: bool = False  # a byte of the request may have reached the socket


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("rsafe_upstream_attempt", default=None)
_USED: weakref.WeakSet[Any] = weakref.WeakSet()  # connections (protocols) that carried a request
# Recent aiohttp holds the headers back to send them with the body; older ones write them in send()
_HEADERS_WAIT_FOR_BODY = hasattr(StreamWriter, "send_headers")


def _closed(conn: Any) -> bool:
    transport = conn.transport
    return transport is None or transport.is_closing()


def _closed_by_peer(conn: Any) -> bool:
    """An idle HTTP/1.1 connection is readable only when the peer closed or reset it."""
    if _closed(conn):
        return True
    sock = conn.transport.get_extra_info("socket")
    if sock is None or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class ProbingRequest(aiohttp.ClientRequest):
    async def send(self, conn: Any) -> Any:
        attempt = _ATTEMPT.get()
        protocol = conn.protocol
        if protocol is not None and protocol in _USED and _closed_by_peer(conn):
            raise StaleConnection("the pooled upstream connection was closed before the request was written")
        if protocol is not None:
            _USED.add(protocol)
        if attempt is not None and (not _HEADERS_WAIT_FOR_BODY or self.method in ("GET", "HEAD", "OPTIONS")):
            attempt.written = True  # the headers are written inside send()
        return await super().send(conn)

    async def write_bytes(self, writer: Any, conn: Any, *args: Any, **kwargs: Any) -> None:
        attempt = _ATTEMPT.get()
        if attempt is not None and not _closed(conn):
            attempt.written = True  # the first write (headers + body) follows without a pause
        await super().write_bytes(writer, conn, *args, **kwargs)


async def request(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
    """`session.request`, retried once on a stale pooled connection that took no byte of it."""
    for retry in (False, True):
        attempt = _Attempt()
        token = _ATTEMPT.set(attempt)
        try:
            return await session.request(method, url, **kwargs)
        except aiohttp.ClientConnectorError:
            raise  # could not connect at all: not a stale connection
        except STALE_ERRORS as exc:
            if retry or attempt.written:
                raise
            log.info("upstream_stale_connection_retried", url=url, error=type(exc).__name__)
        finally:
            _ATTEMPT.reset(token)
    raise AssertionError("unreachable")
