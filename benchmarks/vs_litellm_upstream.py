"""The fake upstream of benchmarks/vs_litellm.py: OpenAI's chat wire protocol, JSON and SSE.

The reply is the last user message's words reversed (as long as the prompt, never seen
before when the prompt is new); a stream sends it in ~4-character chunks, one per event.

    .venv/bin/python benchmarks/vs_litellm_upstream.py --port 9000
"""

from __future__ import annotations

import argparse
import time


def upstream_app():
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    def reply_to(body: dict) -> str:
        user = next((m.get("content") or "" for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        return " ".join(reversed(str(user).split()))

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        text, model, created = reply_to(body), body.get("model", "bench"), int(time.time())
        usage = {"prompt_tokens": 70, "completion_tokens": 70, "total_tokens": 140}
        if not body.get("stream"):
            return Response(orjson.dumps({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                             "logprobs": None}],
                "usage": usage,
            }), media_type="application/json")

        def event(delta: dict, finish: str | None = None) -> bytes:
            chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        async def events():
            yield event({"role": "assistant", "content": ""})
            for i in range(0, len(text), 4):  # ~one token per event
                yield event({"content": text[i : i + 4]})
            yield event({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": [{"id": "bench", "object": "model", "created": 0,
                                                                   "owned_by": "bench"}]}), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


if __name__ == "__main__":
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    uvicorn.run(upstream_app(), host="127.0.0.1", port=ap.parse_args().port, log_level="warning", access_log=False)
