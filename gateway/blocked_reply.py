"""An input block answered as a normal 200 reply instead of an HTTP 400 (`input_block: completion`).

For clients that cannot take an error: chat UIs that would show a stack trace, scanners such as
garak that record a 400 as a skipped attempt. The reply is what a content-filtered completion
looks like, in the request's own API and streaming mode:

- chat: one assistant message per choice (`n`), `content` = the policy message,
  `finish_reason: "content_filter"`;
- completions: `text` = the policy message, `finish_reason: "content_filter"`;
- Responses: `status: "incomplete"`, `incomplete_details.reason: "content_filter"`, one message
  whose `output_text` is the policy message (the shape of a blocked non-streamed reply); streamed,
  the usual event sequence ending in `response.completed`, which is the one terminal event the
  openai SDK's `responses.stream(...).get_final_response()` accepts.

`usage` is all zeros: the gateway wrote the reply, no model tokens went into it. Streams send the
usage chunk when `stream_options.include_usage` was asked, as OpenAI does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from gateway.apis import block_response
from gateway.streams.chat import DONE_LINE, sse, sse_named

_ZERO = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def blocked_reply(kind: str, body: dict[str, Any], message: str, stream: bool) -> dict[str, Any] | AsyncIterator[bytes]:
    """`kind`: the API's stream kind (chat, completions, responses)."""
    model, created = str(body.get("model", "")), int(time.time())
    rid = uuid.uuid4().hex[:24]
    if kind == "responses":
        return _aiter(_responses_events(model, created, rid, message)) if stream else _response(model, created, rid, message)
    n = body.get("n") if isinstance(body.get("n"), int) and 1 <= body["n"] <= 128 else 1
    base = {"id": ("chatcmpl-rsafe-" if kind == "chat" else "cmpl-rsafe-") + rid, "created": created, "model": model}
    if not stream:
        if kind == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": message, "refusal": None},
                        "finish_reason": "content_filter", "logprobs": None} for i in range(n)]
            return {**base, "object": "chat.completion", "choices": choices, "usage": dict(_ZERO)}
        choices = [{"index": i, "text": message, "finish_reason": "content_filter", "logprobs": None} for i in range(n)]
        return {**base, "object": "text_completion", "choices": choices, "usage": dict(_ZERO)}
    usage = bool((body.get("stream_options") or {}).get("include_usage")) if isinstance(body.get("stream_options"), dict) else False
    return _aiter(_chat_events(kind, base, n, message, usage))


async def _aiter(events: Iterator[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def _chat_events(kind: str, base: dict[str, Any], n: int, message: str, include_usage: bool) -> Iterator[bytes]:
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False) -> bytes:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        return sse({**base, "object": obj, "choices": [choice]})

    for i in range(n):
        if kind == "chat":
            yield chunk(i, None, None, role=True)
        yield chunk(i, message, None)
        yield chunk(i, None, "content_filter")
    if include_usage:
        yield sse({**base, "object": obj, "choices": [], "usage": dict(_ZERO)})
    yield DONE_LINE


def _response(model: str, created: int, rid: str, message: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": "resp_rsafe_" + rid, "object": "response", "created_at": created, "model": model,
        "status": "completed", "error": None, "incomplete_details": None, "output": [],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    }
    block_response(response, message)
    return response


def _responses_events(model: str, created: int, rid: str, message: str) -> Iterator[bytes]:
    final = _response(model, created, rid, message)
    item = final["output"][0]
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": {**final, "status": "in_progress", "incomplete_details": None,
                                                  "output": [], "usage": None}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": part},
        {"type": "response.output_text.delta", **where, "delta": message, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": message, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": message}},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    for n, event in enumerate(events):
        yield sse_named({**event, "sequence_number": n})
