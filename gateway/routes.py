"""Route handlers: a few lines each, calling the `Gateway` service."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.apis import Api
from gateway.errors import (
    BadRequest, ClientGone, GatewayError, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized, UpstreamStatusError,
)
from gateway.service import Gateway, RequestContext
from gateway.streams.chat import sse

log = structlog.get_logger("rsafe.gateway")
T = TypeVar("T")


def _json(data: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def request_context(request: Request, route: str) -> RequestContext:
    gw = gateway_of(request)
    auth = request.headers.get("authorization")
    key_id = None
    if gw.settings.gateway_keys:
        token = auth[7:].strip() if auth and auth.lower().startswith("bearer ") else ""
        for key in gw.settings.gateway_keys:
            if token and secrets.compare_digest(token.encode(), key.key.get_secret_value().encode()):
                key_id = key.id
                break
        else:
            raise Unauthorized("a valid gateway API key is required (Authorization: Bearer <key>)")
    return RequestContext(request.state.request_id, route, key_id=key_id, client_auth=auth)


async def read_json(request: Request, limit: int, timeout_s: float | None = None) -> tuple[Any, bytes]:
    """The body as JSON (and its bytes): at most `limit` bytes, all of it within `timeout_s`
    (else 408: a client that declares more than it sends must not hold a connection)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError as exc:
        got = sum(map(len, chunks))
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s "
                             f"({got} of {declared or 'an unknown number of'} bytes)") from exc
    except ClientDisconnect as exc:
        raise BadRequest("the client went away while sending the request") from exc
    raw = b"".join(chunks)
    try:
        return orjson.loads(raw), raw
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc


def moderated(api: Api) -> Callable[[Request], Awaitable[Response]]:
    """The handler of one moderated OpenAI endpoint (chat, completions, responses, embeddings)."""

    async def handler(request: Request) -> Response:
        gw = gateway_of(request)
        ctx = request_context(request, api.name)
        body, raw = await read_json(request, gw.settings.max_body_bytes, gw.settings.body_read_timeout_s)
        result, headers = await until_disconnect(request, gw.handle(ctx, api, body, raw))
        if isinstance(result, dict):
            return _json(result, headers)
        return StreamingResponse(_guarded(result, ctx), media_type="text/event-stream", headers={
            **headers, "cache-control": "no-cache", "x-accel-buffering": "no",
        })

    return handler


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (upstream call and guard checks included) if the client goes away.
    Streams are covered by StreamingResponse itself, which stops on disconnect."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            log.info("client_disconnected", request_id=request.state.request_id)
            raise ClientGone("the client disconnected before the response was ready")
    return task.result()


async def moderations(request: Request) -> Response:
    gw = gateway_of(request)
    ctx = request_context(request, "moderations")
    body, _ = await read_json(request, gw.settings.max_body_bytes, gw.settings.body_read_timeout_s)
    return _json(await until_disconnect(request, gw.moderations(ctx, body)))


async def _guarded(stream: AsyncIterator[bytes], ctx: RequestContext) -> AsyncIterator[bytes]:
    """Once headers are out, an error can only be reported in-band, as an SSE error event."""
    try:
        async for chunk in stream:
            yield chunk
    except GatewayError as exc:
        log.warning("stream_failed", request_id=ctx.request_id, error=exc.message)
        yield sse(exc.body())
        yield b"data: [DONE]\n\n"


async def models(request: Request) -> Response:
    gw = gateway_of(request)
    ctx = request_context(request, "models")
    return _json(await gw.upstream.get("/models", ctx.client_auth))


async def model(request: Request) -> Response:
    """`GET /v1/models/{id}`: relayed to the upstream that serves the model; an upstream with no
    per-model route (vLLM answers 404) is asked for its list instead. A litellm route has no models
    endpoint: the model is answered from the configured route."""
    gw = gateway_of(request)
    ctx = request_context(request, "model")
    model_id = request.path_params["model_id"]
    route = gw.settings.route_for(model_id)
    if route.provider == "litellm":
        return _json({"id": model_id, "object": "model", "created": 0, "owned_by": "rsafe-gateway"})
    name = route.model or model_id
    try:
        found = await gw.upstream.get("/models/" + urllib.parse.quote(name), ctx.client_auth, model=model_id)
    except UpstreamStatusError as exc:
        if exc.status not in (404, 405):
            raise
        listing = await gw.upstream.get("/models", ctx.client_auth, model=model_id)
        data = listing.get("data") if isinstance(listing.get("data"), list) else []
        found = next((m for m in data if isinstance(m, dict) and m.get("id") == name), None)
        if found is None:
            raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found") from exc
    return _json({**found, "id": model_id} if route.model else found)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gw = gateway_of(request)
    store = gw.store
    body = {
        "status": "ready",
        "policy_version": store.current.version,
        "policies_loaded_at": store.loaded_at,
        "guard": gw.moderator.guard_name,
        "last_reload_error": store.last_error,
    }
    if store.last_error:
        body["status"] = "degraded"  # still serving the last good policies
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    gw = gateway_of(request)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
