"""Every error the gateway returns, each knowing its HTTP status and OpenAI error code.

    GatewayError                    -> {"error": {"message", "type", "param", "code"}}
    ├── BadRequest          400  invalid_request_error
    │   └── ContentBlocked  400  code=content_filter, param=<policy id>, x-should-retry: false
    │                            (the message ends with the safety-system sentence LiteLLM maps)
    ├── Unauthorized        401  invalid_api_key
    ├── NotFound            404  not_found
    ├── MethodNotAllowed    405
    ├── RequestTimeout      408  request_timeout      (the body did not arrive in time)
    ├── PayloadTooLarge     413
    ├── RateLimited         429  rate_limit_exceeded, Retry-After  (wrong admin keys)
    ├── ClientGone          499  client_disconnected  (nobody reads it; counted in metrics)
    ├── UpstreamError       502  upstream_error       (refused, 5xx, unreadable reply)
    │   └── UpstreamStreamCut  upstream_stream_cut  (a stream ended early: sent in-band)
    └── UpstreamTimeout     504  upstream_timeout

Lower-level errors (aiohttp, JSON, litellm) are translated to these at one boundary
(`gateway/upstream.py`, `gateway/app.py`), with `raise ... from exc`.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        headers = {**self.headers(), **(extra_headers or {})}
        return Response(orjson.dumps(self.body()), self.status, headers, media_type="application/json")


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ContentBlocked(BadRequest):
    """An input block. The message is the policy's own, followed by the sentence OpenAI uses for
    its safety system's rejections, which is what LiteLLM's SDK matches (by text, not by `code`) to
    raise `litellm.ContentPolicyViolationError` for OpenAI-compatible providers; `innererror.code`
    is Azure's, which LiteLLM's azure provider reads. `policy_message` is the message alone."""

    code = "content_filter"
    SAFETY_PHRASE = "Your request was rejected as a result of the safety system."

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.policy_message = message
        if "request was rejected as a result of the safety system" not in message.lower():
            message = f"{message} ({self.SAFETY_PHRASE})" if message else self.SAFETY_PHRASE
        super().__init__(message, param=param)

    def body(self) -> dict:
        body = super().body()
        body["error"]["innererror"] = {"code": "ResponsibleAIPolicyViolation", "policy": self.param}
        return body

    # The x-rsafe-* headers of the decision that blocked (policy version, policies checked, input
    # decision), set by the gateway service, so a block carries them like any moderated answer.
    decision_headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        # SDKs retry on their own; a policy block must never be retried.
        return {**self.decision_headers, "x-should-retry": "false"}


class Unauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class ClientGone(GatewayError):
    status = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamStatusError(GatewayError):
    """The upstream answered with a 4xx: relay its status and error body as they are."""

    type = "upstream_error"

    def __init__(self, status: int, body: bytes, content_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"upstream returned HTTP {status}")
        self.status = status
        self.raw = body  # already scrubbed of the gateway's secrets (gateway/upstream_relay.py)
        self.content_type = content_type
        self.relayed = headers or {}  # Retry-After, retry-after-ms, x-ratelimit-*

    def headers(self) -> dict[str, str]:
        return dict(self.relayed)

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        return Response(self.raw, self.status, {**self.relayed, **(extra_headers or {})}, media_type=self.content_type)


class RequestTimeout(GatewayError):
    """The client declared a body it did not send in time (`body_read_timeout_s`)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def headers(self) -> dict[str, str]:
        return {"connection": "close"}  # the rest of the body is never read


class UpstreamStreamCut(UpstreamError):
    """The upstream stream stopped before it was complete (no `[DONE]`/finish reason, no Responses
    terminal event, or a broken connection). Headers are out by then: it is sent as an SSE error event."""

    code = "upstream_stream_cut"
