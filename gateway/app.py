"""`create_app(settings)`: the routes, the middleware and the lifespan. Nothing else."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import routes
from gateway.admin.view import admin_routes
from gateway.apis import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES
from gateway.errors import GatewayError, MethodNotAllowed, NotFound
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.upstream import Upstream
from guard.verdict import Guard

log = structlog.get_logger("rsafe.gateway")


class RequestIdMiddleware:
    """Pure ASGI: a request id per request (bound to the log context), echoed as `x-request-id`;
    requests counted by route and status. With several workers, `x-rsafe-worker` names the
    process that answered (its pid)."""

    def __init__(self, app: ASGIApp, worker_header: bool = False) -> None:
        self.app = app
        self.worker = (b"x-rsafe-worker", str(os.getpid()).encode()) if worker_header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header, *((self.worker,) if self.worker else ())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                gateway: Gateway | None = getattr(scope["app"].state, "gateway", None)
                if gateway is not None:
                    route = scope.get("route")
                    name = getattr(route, "name", None) or "unmatched"
                    gateway.metrics.requests.labels(name, str(status or 500)).inc()


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        log.warning("request_failed", status=exc.status, error=exc.message, path=request.url.path)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return NotFound(f"unknown route {request.method} {request.url.path}").response()
    if exc.status_code == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.url.path}").response()
    return GatewayError(str(exc.detail)).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return GatewayError("the gateway failed while handling the request").response()


def create_app(settings: Settings, *, upstream: Upstream | None = None, guard: Guard | None = None) -> Starlette:
    """`upstream` and `guard` can be injected (tests, embedding); by default they come from settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings, upstream=upstream, guard=guard)
        app.state.gateway = gateway
        await gateway.start()
        log.info(
            "gateway_started", policies=str(settings.policies), version=gateway.policies.version,
            guard=gateway.moderator.guard_name,
        )
        try:
            yield
        finally:
            await gateway.aclose()
            if gateway.metrics.multiprocess:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # its live gauges leave the merge

    service_routes = [
        Route("/v1/moderations", routes.moderations, methods=["POST"], name="moderations"),
        Route("/healthz", routes.healthz, methods=["GET"], name="healthz"),
        Route("/readyz", routes.readyz, methods=["GET"], name="readyz"),
        Route("/metrics", routes.metrics, methods=["GET"], name="metrics"),
        *admin_routes(),  # /admin: answers 404 unless RSAFE_ADMIN_KEY is set
    ]
    proxy_routes = [
        Route("/v1/chat/completions", routes.moderated(CHAT), methods=["POST"], name="chat_completions"),
        Route("/v1/completions", routes.moderated(COMPLETIONS), methods=["POST"], name="completions"),
        Route("/v1/responses", routes.moderated(RESPONSES), methods=["POST"], name="responses"),
        Route("/v1/embeddings", routes.moderated(EMBEDDINGS), methods=["POST"], name="embeddings"),
        Route("/v1/models", routes.models, methods=["GET"], name="models"),
        Route("/v1/models/{model_id:path}", routes.model, methods=["GET"], name="model"),
    ]
    return Starlette(
        routes=service_routes + ([] if settings.guard_only else proxy_routes),
        middleware=[Middleware(RequestIdMiddleware, worker_header=settings.workers > 1)],
        exception_handlers={GatewayError: _gateway_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
