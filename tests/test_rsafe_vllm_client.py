"""The vllm engine's HTTP side against httpx.MockTransport: bodies, load spreading, failures."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from guard.errors import GuardConfigError, GuardFailure
from guard.rsafe.backend import RSafeGuard, parse_options
from guard.rsafe.engines import Prompt
from guard.rsafe.prompt import render_answer
from guard.rsafe.vllm_client import VLLMEngine
from tests._rsafe_support import POLICIES, request

PROMPT = Prompt("judge this", ({"role": "user", "content": "judge this"},))


def _chat(content: str, finish: str = "stop", **message) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content, **message}, "finish_reason": finish}]}


def _engine(handler, urls=("http://a:8000",), **kw) -> VLLMEngine:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return VLLMEngine(list(urls), kw.pop("model", "guard"), client=client, **kw)


async def test_chat_request_body_is_greedy_and_bounded() -> None:
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((str(req.url), json.loads(req.content)))
        return httpx.Response(200, json=_chat("<think>x</think>\\boxed{safe}"))

    engine = _engine(handler, extra_body={"seed": 0})
    gen = await engine.generate(PROMPT, 512)
    assert gen.text == "<think>x</think>\\boxed{safe}" and gen.finished
    url, body = seen[0]
    assert url == "http://a:8000/v1/chat/completions"
    assert body == {"model": "guard", "max_tokens": 512, "temperature": 0.0, "seed": 0, "messages": list(PROMPT.messages)}


async def test_completions_endpoint_uses_template_and_finish_reason() -> None:
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((str(req.url), json.loads(req.content)))
        return httpx.Response(200, json={"choices": [{"text": "<think>abc", "finish_reason": "length"}]})

    engine = _engine(handler, urls=["http://a:8000/v1/"], endpoint="completions", completion_template="[U]{prompt}[A]")
    gen = await engine.generate(PROMPT, 16)
    assert not gen.finished
    assert seen[0][0] == "http://a:8000/v1/completions"
    assert seen[0][1]["prompt"] == "[U]judge this[A]"


async def test_reasoning_field_is_folded_back_into_think_block() -> None:
    engine = _engine(lambda r: httpx.Response(200, json=_chat("\\boxed{unsafe}", reasoning="it is bad")))
    assert (await engine.generate(PROMPT, 8)).text == "<think>it is bad</think>\\boxed{unsafe}"
    engine = _engine(lambda r: httpx.Response(200, json=_chat("\\boxed{safe}", reasoning_content="fine")))
    assert (await engine.generate(PROMPT, 8)).text == "<think>fine</think>\\boxed{safe}"


async def test_model_discovered_once_from_v1_models() -> None:
    paths = []

    def handler(req: httpx.Request) -> httpx.Response:
        paths.append(req.url.path)
        if req.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served-guard"}]})
        assert json.loads(req.content)["model"] == "served-guard"
        return httpx.Response(200, json=_chat("ok"))

    engine = _engine(handler, model=None)
    await asyncio.gather(*(engine.generate(PROMPT, 8) for _ in range(5)))
    assert paths.count("/v1/models") == 1 and engine.model == "served-guard"


async def test_load_is_spread_over_urls_and_in_flight_is_bounded() -> None:
    hosts: list[str] = []
    live = 0
    peak = 0

    async def handler(req: httpx.Request) -> httpx.Response:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        hosts.append(req.url.host)
        await asyncio.sleep(0.02)
        live -= 1
        return httpx.Response(200, json=_chat("ok"))

    engine = _engine(handler, urls=["http://a:1", "http://b:1", "http://c:1"], max_in_flight=6)
    await asyncio.gather(*(engine.generate(PROMPT, 8) for _ in range(30)))
    assert {h: hosts.count(h) for h in "abc"} == {"a": 10, "b": 10, "c": 10}
    assert peak == 6  # concurrent up to the bound, never beyond


async def test_connection_error_fails_over_to_another_url() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "down":
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(200, json=_chat("ok"))

    engine = _engine(handler, urls=["http://down:1", "http://up:1"])
    for _ in range(4):
        assert (await engine.generate(PROMPT, 8)).text == "ok"
    single = _engine(handler, urls=["http://down:1"])
    with pytest.raises(GuardFailure, match="unreachable"):
        await single.generate(PROMPT, 8)


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(500, text="boom"), "HTTP 500"),
        (httpx.Response(200, text="not json"), "non-JSON"),
        (httpx.Response(200, json={"choices": []}), "choices"),
        (httpx.Response(200, json={"error": "x"}), "choices"),
    ],
)
async def test_bad_server_answers_are_failures(response, match) -> None:
    engine = _engine(lambda r: response)
    with pytest.raises(GuardFailure, match=match):
        await engine.generate(PROMPT, 8)


async def test_timeout_is_failure() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    engine = _engine(handler, timeout_s=0.01)
    with pytest.raises(GuardFailure, match="timed out"):
        await engine.generate(PROMPT, 8)


def test_config_errors() -> None:
    with pytest.raises(GuardConfigError):
        VLLMEngine([])
    with pytest.raises(GuardConfigError):
        VLLMEngine(["http://a"], endpoint="responses")
    with pytest.raises(GuardConfigError):
        VLLMEngine(["http://a"], endpoint="completions", completion_template="no placeholder")


async def test_guard_over_mock_server_end_to_end() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        prompt = json.loads(req.content)["messages"][0]["content"]
        if "without reasoning" in prompt:
            return httpx.Response(200, json=_chat("\\boxed{safe}"))
        return httpx.Response(200, json=_chat(render_answer("unsafe", ["S9"], "nerve agent synthesis")))

    engine = _engine(handler)
    guard = RSafeGuard(engine, parse_options({"url": "http://a:8000"}))
    verdict = await guard.check(request("how to make sarin", policies=POLICIES))
    assert verdict.violated == ["S9"] and verdict.reasoning == "nerve agent synthesis"
