"""The rest of the OpenAI surface and the concurrent input check, through the official client."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import TEST_POLICIES
from tests.fakes.guard import ScriptedGuard
from tests.servers import serve


def quote(text: str) -> str:
    return text.replace(":", "%3A").replace(" ", "%20")


def start_gateway(fake, tmp, guard, extra_settings: str = ""):
    (tmp / "policies.yaml").write_text(TEST_POLICIES.replace("settings:\n", "settings:\n" + extra_settings, 1))
    settings = Settings(policies=tmp / "policies.yaml", upstream=fake.state.url + "/v1", block_log=tmp / "b.jsonl")
    app = create_app(settings, guard=guard)

    async def tasks(request):
        current = asyncio.current_task()
        names = [t.get_name() for t in asyncio.all_tasks() if t is not current]
        return JSONResponse({"tasks": names, "guard_active": guard.active})

    app.router.routes.append(Route("/_test/tasks", tasks))
    return serve(app)


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    with start_gateway(fake, tmp_path_factory.mktemp("gw"), ScriptedGuard()) as url:
        yield url


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway + "/v1", api_key="k", max_retries=0)


def test_legacy_completions_allowed_and_blocked(client):
    r = client.completions.create(model="echo", prompt="hello legacy")
    assert r.choices[0].text == "hello legacy"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="echo", prompt=["fine", "VIOLATE:VIOLENCE"])
    assert info.value.code == "content_filter"
    r = client.completions.create(model="say:" + quote("VIOLATE:VIOLENCE out"), prompt="hi")
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].text == "Blocked by VIOLENCE."


def test_legacy_completions_stream(client):
    text = "streamed legacy completion text that is long enough to cross windows"
    got = "".join(c.choices[0].text for c in client.completions.create(model="echo", prompt=text, stream=True) if c.choices)
    assert got == text
    bad = "ok " * 15 + "VIOLATE:VIOLENCE" + " tail" * 10
    chunks = list(client.completions.create(model="say:" + quote(bad), prompt="x", stream=True))
    got = "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "content_filter" and "VIOLATE" not in got and "tail" not in got


def test_responses_api(client):
    r = client.responses.create(model="echo", input="hello responses")
    assert r.output_text == "hello responses" and r.status == "completed"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="echo", input=[{"role": "user", "content": [{"type": "input_text", "text": "VIOLATE:VIOLENCE"}]}])
    assert info.value.code == "content_filter"
    r = client.responses.create(model="say:" + quote("VIOLATE:VIOLENCE"), input="hi")
    assert r.status == "incomplete" and r.incomplete_details.reason == "content_filter"
    assert r.output_text == "Blocked by VIOLENCE."


def test_responses_stream_allowed_and_blocked(client):
    text = "a streamed Responses API answer, long enough for a few windows of text"
    deltas, final = "", None
    with client.responses.stream(model="echo", input=text) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas += event.delta
        final = stream.get_final_response()
    assert deltas == text and final.output_text == text
    bad = "fine " * 12 + "VIOLATE:VIOLENCE" + " after" * 10
    deltas, kinds = "", []
    for event in client.responses.create(model="say:" + quote(bad), input="x", stream=True):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas += event.delta
    assert kinds[-1] == "response.completed"  # a refusal, as OpenAI streams one (tests/test_client_compat.py)
    assert event.response.incomplete_details.reason == "content_filter"
    assert "VIOLATE" not in deltas and "after" not in deltas


def test_embeddings_input_checked(client, fake):
    r = client.embeddings.create(model="echo", input=["a", "b"])
    assert len(r.data) == 2
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="echo", input="VIOLATE:VIOLENCE")
    client.embeddings.create(model="echo", input="mail x@y.io")
    assert fake.state.calls[-1]["body"]["input"] == "mail [REDACTED:email]"


def test_concurrent_input_check_cancels_upstream(fake, tmp_path):
    """The upstream starts while the (slow) guard checks; the block closes the upstream stream."""
    with start_gateway(fake, tmp_path, ScriptedGuard(delay=0.4)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        fake.state.cancelled.clear()
        t0 = time.perf_counter()
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="drip", stream=True,
                                           messages=[{"role": "user", "content": "VIOLATE:VIOLENCE " + "z" * 300}])
        assert time.perf_counter() - t0 < 2
        deadline = time.time() + 5
        while "drip" not in fake.state.cancelled and time.time() < deadline:
            time.sleep(0.05)
        assert "drip" in fake.state.cancelled, "the upstream call must be cancelled on an input block"
        assert fake.state.calls[-1]["body"]["model"] == "drip", "concurrent mode started the upstream call"


def test_before_mode_never_calls_upstream_on_block(fake, tmp_path):
    with start_gateway(fake, tmp_path, ScriptedGuard(delay=0.2), "  input_mode: before\n") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        before = len(fake.state.calls)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])
        assert len(fake.state.calls) == before


def _tasks(url):
    return httpx.get(url + "/_test/tasks").json()


def test_client_disconnect_leaves_no_task_running(fake, tmp_path):
    guard = ScriptedGuard(delay=1.0)
    with start_gateway(fake, tmp_path, guard) as url:
        baseline = len(_tasks(url)["tasks"])
        # non-streaming: the client gives up while the guard and the upstream are both in flight
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", timeout=0.3,
                       json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]})
        # streaming: hang up after the first event
        body = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": "w" * 300}]}
        fake.state.cancelled.clear()
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as r:
            for _ in r.iter_lines():
                break
        deadline = time.time() + 5
        while time.time() < deadline:
            state = _tasks(url)
            if len(state["tasks"]) <= baseline and state["guard_active"] == 0 and "drip" in fake.state.cancelled:
                break
            time.sleep(0.1)
        assert state["guard_active"] == 0, "a guard check outlived its client"
        assert len(state["tasks"]) <= baseline, state
        assert "drip" in fake.state.cancelled


def test_moderations_endpoint(client):
    r = client.moderations.create(input=["hello", "VIOLATE:VIOLENCE", "mail a@b.io"])
    flagged = [x.flagged for x in r.results]
    assert flagged == [False, True, True]
    raw = r.results[1].model_dump()
    assert raw["category_scores"]["VIOLENCE"] == 1.0 and raw["reasoning"] == "scripted: VIOLENCE"
    assert raw["categories"]["SECRETS"] is False and r.results[2].model_dump()["categories"]["SECRETS"] is True


def test_moderations_guard_failure_flags_closed(client):
    r = client.moderations.create(input="GUARD_CRASH")
    raw = r.results[0].model_dump()
    assert raw["flagged"] is True and "error" in raw
