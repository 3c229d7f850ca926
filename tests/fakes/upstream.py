"""A scripted fake upstream LLM that speaks the real OpenAI wire protocol (JSON and SSE).

Behaviour is chosen by model name (the part before any ':'):
- `echo`: answers with the last user message's text.
- `say:<text>`: answers with <text> (URL-quoted: %xx escapes allowed).
- `tools`: answers with a tool call `lookup({"q": <last user text>})`.
- `slow`: waits 2 s before answering.
- `error`: HTTP 500.  `garbage`: 200 with a body that is not JSON.  `bad`: HTTP 400 with an OpenAI error.
- `drip`: streams slowly (for disconnect/cancellation tests).
- `paced:<ttft_ms>:<tokens_per_s>:<n_tokens>`: streams n 4-character tokens after a fixed time to
  first token, at a fixed rate (for the streaming benchmark).
- `cut` (or `cut:<text>`, like `say`): streams the echo reply (or <text>), then stops: no finish
  reason, no `[DONE]` (chat); no terminal event (Responses). `break`: the same, but the
  connection is dropped mid-body (broken chunking).
- `echo-auth-401`: HTTP 401 whose body echoes the request headers it got, Authorization included
  (the way some proxies answer), with the Authorization value in an `x-ratelimit-echo` header too.
- `ratelimit`: HTTP 429 with `Retry-After: 7`, `retry-after-ms: 7000`, `x-ratelimit-*` headers
  (one echoing the Authorization header) and an `x-upstream-trace` header that is not relayed.
Streams split the reply into `chunk` characters (`?chunk=` in the model name is not needed:
use the `x-fake-chunk` header or the default 7). Every request is recorded in `app.state.calls`;
streams closed early are recorded in `app.state.cancelled`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return c or ""
    return ""


def reply_for(model: str, messages: list[dict[str, Any]]) -> str:
    kind, _, arg = model.partition(":")
    if kind == "say" or (kind in ("cut", "break") and arg):
        return urllib.parse.unquote(arg)
    return _last_user(messages)


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    app = request.app
    app.state.calls.append({"body": body, "headers": dict(request.headers)})
    model = body["model"]
    kind = model.partition(":")[0]
    if kind == "error":
        return Response(b'{"error": {"message": "boom", "type": "server_error"}}', 500, media_type="application/json")
    if kind == "garbage":
        return Response(b"<html>not json</html>", 200, media_type="text/html")
    if kind == "bad":
        err = {"error": {"message": "upstream says no", "type": "invalid_request_error", "param": "x", "code": "bad"}}
        return Response(orjson.dumps(err), 400, media_type="application/json")
    refused = _refusal(kind, request)
    if refused is not None:
        return refused
    if kind == "slow":
        await asyncio.sleep(2.0)
    pace = None
    if kind == "paced":
        ttft_ms, rate, count = (float(x) for x in model.split(":")[1:4])
        pace = (ttft_ms / 1000, 1 / rate)
        text = "word" * int(count)
    else:
        text = reply_for(model, body["messages"])
    n = int(body.get("n") or 1)
    created = int(time.time())
    if kind == "tools":
        message: dict[str, Any] = {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": orjson.dumps({"q": text}).decode()}}],
        }
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": text}, "stop"
    if not body.get("stream"):
        return Response(orjson.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)],
            "usage": _usage(), "system_fingerprint": "fp_fake",
        }), media_type="application/json")
    size = 4 if pace else int(request.headers.get("x-fake-chunk", "7"))
    delay = 0.05 if kind == "drip" else 0.0
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model}
        try:
            if pace:
                await asyncio.sleep(pace[0])
            for i in range(n):
                yield b"data: " + orjson.dumps({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}) + b"\n\n"
            if kind == "tools":
                args = message["tool_calls"][0]["function"]["arguments"]
                first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
                yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]}) + b"\n\n"
                for j in range(0, len(args), size):
                    part = {"index": 0, "function": {"arguments": args[j:j + size]}}
                    yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"tool_calls": [part]}, "finish_reason": None}]}) + b"\n\n"
            else:
                for j in range(0, len(text), size):
                    for i in range(n):
                        yield b"data: " + orjson.dumps({**base, "choices": [{"index": i, "delta": {"content": text[j:j + size]}, "finish_reason": None}]}) + b"\n\n"
                    if delay or pace:
                        await asyncio.sleep(pace[1] if pace else delay)
            if kind == "break":
                await asyncio.sleep(0.2)  # the gateway has read what was sent when the connection drops
                raise ConnectionAbortedError("the fake upstream drops the connection mid-stream")
            if kind == "cut":
                app.state.completed.append(model)
                return  # no finish reason, no [DONE]: the body just ends
            for i in range(n):
                yield b"data: " + orjson.dumps({**base, "choices": [{"index": i, "delta": {}, "finish_reason": finish}]}) + b"\n\n"
            if include_usage:
                yield b"data: " + orjson.dumps({**base, "choices": [], "usage": _usage()}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except BaseException:
            app.state.cancelled.append(model)
            raise
        app.state.completed.append(model)

    return StreamingResponse(events(), media_type="text/event-stream")


def _refusal(kind: str, request: Request) -> Response | None:
    """`echo-auth-401` and `ratelimit` (any endpoint)."""
    auth = request.headers.get("authorization", "")
    if kind == "echo-auth-401":
        err = {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_request_error",
                         "param": None, "code": "invalid_api_key"}, "request_headers": dict(request.headers)}
        return Response(orjson.dumps(err), 401, {"x-ratelimit-echo": auth}, media_type="application/json")
    if kind == "ratelimit":
        err = {"error": {"message": "Rate limit reached: try again in 7s", "type": "requests",
                         "param": None, "code": "rate_limit_exceeded"}}
        headers = {"retry-after": "7", "retry-after-ms": "7000", "x-ratelimit-limit-requests": "60",
                   "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "7s",
                   "x-ratelimit-echo": auth, "x-upstream-trace": "internal-trace-id"}
        return Response(orjson.dumps(err), 429, headers, media_type="application/json")
    return None


def _record(request: Request, body: dict[str, Any]) -> None:
    request.app.state.calls.append({"body": body, "headers": dict(request.headers), "path": request.url.path})


def _stream(request: Request, model: str, chunks, named: bool = False) -> StreamingResponse:
    """SSE from an iterator of event dicts; records cancellation like the chat stream."""
    app = request.app
    delay = 0.05 if model.partition(":")[0] == "drip" else 0.0

    async def events():
        try:
            for event in chunks:
                prefix = b"event: " + event["type"].encode() + b"\n" if named else b""
                yield prefix + b"data: " + orjson.dumps(event) + b"\n\n"
                if delay:
                    await asyncio.sleep(delay)
            if not named:
                yield b"data: [DONE]\n\n"
        except BaseException:
            app.state.cancelled.append(model)
            raise
        app.state.completed.append(model)

    return StreamingResponse(events(), media_type="text/event-stream")


async def completions(request: Request) -> Response:
    body = orjson.loads(await request.body())
    _record(request, body)
    model = body["model"]
    prompt = body["prompt"] if isinstance(body["prompt"], str) else " ".join(body["prompt"])
    text = reply_for(model, [{"role": "user", "content": prompt}])
    base = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model}
    if not body.get("stream"):
        return Response(orjson.dumps({**base, "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                                      "usage": _usage()}), media_type="application/json")
    chunks = [{**base, "choices": [{"index": 0, "text": text[j:j + 5], "finish_reason": None, "logprobs": None}]}
              for j in range(0, len(text), 5)]
    chunks.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
    return _stream(request, model, chunks)


async def embeddings(request: Request) -> Response:
    body = orjson.loads(await request.body())
    _record(request, body)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
    return Response(orjson.dumps({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}}), media_type="application/json")


async def responses(request: Request) -> Response:
    body = orjson.loads(await request.body())
    _record(request, body)
    model = body["model"]
    refused = _refusal(model.partition(":")[0], request)
    if refused is not None:
        return refused
    items = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    text = reply_for(model, [i for i in items if isinstance(i, dict)])
    item = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    final = {"id": "resp_fake", "object": "response", "created_at": 0, "status": "completed", "model": model,
             "output": [item], "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                                         "input_tokens_details": {"cached_tokens": 0},
                                         "output_tokens_details": {"reasoning_tokens": 0}}}
    if not body.get("stream"):
        return Response(orjson.dumps(final), media_type="application/json")
    started = {**final, "status": "in_progress", "output": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part},
    ]
    events += [{"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
                "delta": text[j:j + 6]} for j in range(0, len(text), 6)]
    events += [
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text},
        {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    if model.partition(":")[0] == "cut":  # stop after the deltas: no .done events, no terminal event
        events = [e for e in events if e["type"] != "response.completed" and not e["type"].endswith(".done")]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return _stream(request, model, events, named=True)


async def models(request: Request) -> Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in ("echo", "tools", "slow")]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


def create_fake_upstream() -> Starlette:
    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
    ])
    app.state.calls = []
    app.state.cancelled = []
    app.state.completed = []
    return app


if __name__ == "__main__":  # python -m tests.fakes.upstream --port 9000
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    uvicorn.run(create_fake_upstream(), host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
