"""Upstream LLM clients: one pooled aiohttp session for OpenAI-compatible APIs, litellm for the rest.

Why aiohttp and not httpx on this path: measured on loopback against the same fake
upstream, an httpx.AsyncClient round trip cost ~2.1 ms p50 against ~0.46 ms for aiohttp
(anyio/httpcore overhead), and the gateway's whole overhead budget is 1.5 ms p50.

This module is the boundary where aiohttp/litellm errors become `gateway.errors`:
timeouts -> 504, refused/5xx/garbage -> 502, upstream 4xx -> relayed with their back-off
headers (`Retry-After`, `retry-after-ms`, `x-ratelimit-*`). Whatever is relayed has the
gateway's own secrets scrubbed out (`gateway/upstream_relay.py`). A request that hit a stale
pooled connection before a byte of it was written is retried once (`gateway/upstream_pool.py`).
Streams are async generators of parsed SSE chunks, `DONE` on `data: [DONE]`; a stream that just
stops yields nothing more (the stream classes in `gateway/streams/chat.py` judge whether it was
complete), one that breaks raises `UpstreamStreamCut`. Closing the generator (`aclose()`, or
cancellation) closes the upstream connection, so a client that goes away stops the tokens being
generated and billed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway import upstream_pool
from gateway.errors import GatewayError, UpstreamError, UpstreamStatusError, UpstreamStreamCut, UpstreamTimeout
from gateway.settings import Settings, UpstreamRoute
from gateway.upstream_relay import Scrubber, relayed_headers

DONE = object()  # the `data: [DONE]` sentinel


class Upstream:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._litellm: Any = None
        self.scrub = Scrubber.from_settings(settings)
        self._timeout = aiohttp.ClientTimeout(
            total=settings.upstream_timeout_s, sock_connect=settings.upstream_connect_timeout_s
        )
        # Streams: no total limit (a long answer is fine), but a stall between chunks is not.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.upstream_connect_timeout_s, sock_read=settings.upstream_timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """Created on first use, inside the running loop (aiohttp requires one)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.settings.upstream_max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(), auto_decompress=True,
                request_class=upstream_pool.ProbingRequest,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- routing -------------------------------------------------------------------
    def _target(self, route: UpstreamRoute, path: str, client_auth: str | None) -> tuple[str, dict[str, str]]:
        base = (route.url or self.settings.upstream).rstrip("/")
        headers = {"content-type": "application/json"}
        if route.api_key is not None:
            headers["authorization"] = f"Bearer {route.api_key.get_secret_value()}"
        elif client_auth and self.settings.forward_client_auth and not self.settings.gateway_keys:
            headers["authorization"] = client_auth
        return f"{base}{path}", headers

    @staticmethod
    def _renamed(route: UpstreamRoute, body: dict[str, Any]) -> dict[str, Any]:
        if route.model and route.provider == "openai":
            body = {**body, "model": route.model}
        return body

    # --- calls ---------------------------------------------------------------------
    async def post(self, path: str, body: dict[str, Any], raw: bytes | None, client_auth: str | None) -> dict[str, Any]:
        """Non-streaming POST; `raw` (the client's bytes) is forwarded as is when nothing changed."""
        route = self.settings.route_for(str(body.get("model", "")))
        if route.provider == "litellm":
            return await self._litellm_call(route, body)
        url, headers = self._target(route, path, client_auth)
        payload = raw if raw is not None and not route.model else orjson.dumps(self._renamed(route, body))
        return await self._call("POST", url, headers, payload)

    async def get(self, path: str, client_auth: str | None, model: str = "") -> dict[str, Any]:
        """GET from the upstream that serves `model` (the default upstream when "")."""
        url, headers = self._target(self.settings.route_for(model), path, client_auth)
        return await self._call("GET", url, headers, None)

    async def _call(self, method: str, url: str, headers: dict[str, str], payload: bytes | None) -> dict[str, Any]:
        try:
            response = await upstream_pool.request(
                self.session, method, url, data=payload, headers=headers, timeout=self._timeout)
            async with response:
                content = await response.read()
                return self._json_or_error(response, content)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the upstream could not be reached: {type(exc).__name__}") from exc

    def _json_or_error(self, response: aiohttp.ClientResponse, content: bytes) -> dict[str, Any]:
        """The reply, scrubbed of the gateway's secrets; a 4xx keeps its back-off headers."""
        content = self.scrub.bytes(content)
        headers = relayed_headers(response.headers, self.scrub) if 400 <= response.status < 500 else {}
        return _json_or_error(response.status, content, response.headers.get("content-type", ""), headers)

    async def stream(self, path: str, body: dict[str, Any], client_auth: str | None) -> AsyncIterator[Any]:
        """Open a streaming call: raises here if the upstream refused, else returns the event iterator."""
        route = self.settings.route_for(str(body.get("model", "")))
        if route.provider == "litellm":
            return self._litellm_stream(route, body)
        url, headers = self._target(route, path, client_auth)
        payload = orjson.dumps(self._renamed(route, body))
        try:
            response = await upstream_pool.request(
                self.session, "POST", url, data=payload, headers=headers, timeout=self._stream_timeout)
            if response.status != 200:
                try:
                    content = await response.read()
                finally:
                    response.release()
                self._json_or_error(response, content)
                raise UpstreamError(f"upstream returned HTTP {response.status}")
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the upstream could not be reached: {type(exc).__name__}") from exc
        return EventStream(response, self.scrub)

    # --- litellm (imported only when a route needs it) ------------------------------
    def _litellm_module(self) -> Any:
        if self._litellm is None:
            try:
                import litellm
            except ImportError as exc:
                raise UpstreamError("a litellm upstream is configured but litellm is not installed") from exc
            self._litellm = litellm
        return self._litellm

    def _litellm_kwargs(self, route: UpstreamRoute, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = {**body, "model": route.model or body["model"]}
        if route.url:
            kwargs["api_base"] = route.url
        if route.api_key is not None:
            kwargs["api_key"] = route.api_key.get_secret_value()
        return kwargs

    async def _litellm_call(self, route: UpstreamRoute, body: dict[str, Any]) -> dict[str, Any]:
        litellm = self._litellm_module()
        try:
            result = await litellm.acompletion(**self._litellm_kwargs(route, {**body, "stream": False}))
        except Exception as exc:  # noqa: BLE001 - litellm raises many provider-specific types
            raise _litellm_error(exc, self.scrub) from exc
        data = result.model_dump(exclude_none=True)
        return orjson.loads(self.scrub.bytes(orjson.dumps(data))) if self.scrub else data

    async def _litellm_stream(self, route: UpstreamRoute, body: dict[str, Any]) -> AsyncIterator[Any]:
        litellm = self._litellm_module()
        try:
            stream = await litellm.acompletion(**self._litellm_kwargs(route, {**body, "stream": True}))
            async for chunk in stream:
                event = chunk.model_dump(exclude_none=True)
                yield orjson.loads(self.scrub.bytes(orjson.dumps(event))) if self.scrub else event
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _litellm_error(exc, self.scrub) from exc
        yield DONE


def _litellm_error(exc: Exception, scrub: Scrubber) -> GatewayError:
    status = getattr(exc, "status_code", None)
    if "Timeout" in type(exc).__name__:
        return UpstreamTimeout("the upstream did not answer in time")
    if isinstance(status, int) and 400 <= status < 500:
        body = {"error": {"message": scrub.text(str(exc))[:500], "type": "upstream_error", "param": None, "code": None}}
        return UpstreamStatusError(status, orjson.dumps(body))
    return UpstreamError(f"the upstream failed: {type(exc).__name__}")


def _json_or_error(status: int, content: bytes, content_type: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    if 400 <= status < 500:
        raise UpstreamStatusError(status, content, content_type or "application/json", headers)
    if status >= 500:
        raise UpstreamError(f"upstream returned HTTP {status}")
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the upstream returned a body that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("the upstream returned JSON that is not an object")
    return data


class EventStream:
    """An upstream SSE stream. `aclose()` always frees the connection, even if the stream was
    never iterated (an input block in concurrent mode closes a stream nobody read)."""

    def __init__(self, response: aiohttp.ClientResponse, scrub: Scrubber | None = None) -> None:
        self.response = response
        self._events = _sse_events(response, scrub or Scrubber(()))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events

    async def aclose(self) -> None:
        await self._events.aclose()
        if not self.response.closed and not self.response.content.at_eof():
            self.response.close()


async def _sse_events(response: aiohttp.ClientResponse, scrub: Scrubber) -> AsyncIterator[Any]:
    """Parsed `data:` payloads of an SSE stream, then DONE if the upstream sent `[DONE]`; a body
    that just ends yields nothing more (not DONE: whether the stream was complete is for the
    stream's reader to say). Closes the connection on exit, so a cancelled or abandoned stream
    stops the upstream generating."""
    finished = False
    try:
        async for raw_line in response.content:
            line = raw_line.strip()
            if not line.startswith(b"data:"):
                continue
            data = scrub.bytes(line[5:].strip())
            if data == b"[DONE]":
                finished = True
                yield DONE
                return
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError("the upstream stream carried an event that is not JSON") from exc
            if isinstance(event, dict) and event.get("error") and "choices" not in event:
                raise UpstreamError(f"the upstream stream failed: {str(event['error'])[:200]}")
            yield event
        finished = True  # the body ended (no [DONE]): the connection is clean, the stream maybe not
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("the upstream stream stalled") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamStreamCut(f"the upstream stream broke: {type(exc).__name__}") from exc
    finally:
        if finished:
            response.release()  # back to the pool
        else:
            response.close()  # abandoned mid-stream: drop the connection so the upstream stops
