"""A scripted OpenAI-compatible chat server: the synthetic task's teacher and the tests' endpoint.

It speaks the real wire protocol (`POST /v1/chat/completions` with `n`,
`GET /v1/models`) on a real socket, so `EndpointTeacher` is exercised exactly
as against vLLM or OpenAI. What it answers is a Python function of the
messages and a per-request random generator, seeded from the server's seed, the
messages and how many times they were asked before: the answers do not depend
on the order concurrent requests arrive in, so a run is reproducible.

`noisy_oracle` is the demo's teacher: it knows the gold answer of each prompt
and, like a real teacher, is sometimes wrong or malformed, which rejection
sampling must filter out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping

Answer = Callable[[list[dict[str, str]], random.Random], str]


def create_app(answer: Answer, *, seed: int = 0):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    asked: dict[str, int] = {}
    lock = threading.Lock()

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse({"error": {"message": "messages is required", "type": "invalid_request_error"}}, 400)
        key = json.dumps(messages, sort_keys=True)
        with lock:
            k = asked[key] = asked.get(key, -1) + 1
        rng = random.Random(hashlib.sha256(f"{seed}|{k}|{key}".encode()).hexdigest())
        texts = [answer(messages, rng) for _ in range(int(body.get("n") or 1))]
        return JSONResponse({
            "id": f"chatcmpl-oracle-{rng.getrandbits(32):08x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "oracle"),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "oracle", "object": "model", "owned_by": "training"}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(answer: Answer, *, seed: int = 0) -> Iterator[str]:
    """Run the server on a free local port in a thread; yields its base URL (`.../v1`)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(answer, seed=seed), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("oracle server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def noisy_oracle(gold: Mapping[str, tuple[str, str]], *, wrong_rate: float = 0.2, malformed_rate: float = 0.1) -> Answer:
    """A teacher that answers `gold[prompt] = (right_answer, wrong_answer)`, with mistakes.

    With `wrong_rate` it gives the wrong answer (a confident, well-formed trace
    with the other verdict); with `malformed_rate` it drops the closing tag.
    """

    def answer(messages: list[dict[str, str]], rng: random.Random) -> str:
        right, wrong = gold[messages[-1]["content"]]
        roll = rng.random()
        if roll < wrong_rate:
            return wrong
        if roll < wrong_rate + malformed_rate:
            return right.replace("</think>", "", 1)
        return right

    return answer
