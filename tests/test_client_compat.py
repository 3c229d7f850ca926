"""Blocks every client understands: real HTTP, the official clients (openai-python, LiteLLM's SDK,
openai-agents where installed), against the gateway in front of the scripted fake upstream."""

from __future__ import annotations

import urllib.parse

import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.settings import GatewayKey, Settings, UpstreamRoute
from gateway.moderations import OPENAI_CATEGORIES
from guard.policies import PolicySet
from tests.conftest import TEST_POLICIES
from tests.fakes.guard import ScriptedGuard
from tests.servers import serve

MESSAGE = "Blocked by VIOLENCE."
POLICIES = TEST_POLICIES.replace(
    "    message: Blocked by VIOLENCE.\n",
    "    message: Blocked by VIOLENCE.\n    openai_categories: [violence, violence/graphic]\n",
) + """  - id: SOFTBLOCK
    description: Blocked with a 200 reply.
    applies_to: input
    input_block: completion
    message: Softly blocked.
"""
# A reply that is released in part, then blocked: the windows pass "Here is the plan. F" first.
PARTIAL = "Here is the plan. First, we go. " * 3 + "VIOLATE:VIOLENCE and more after it"


def say(text: str) -> str:
    return "say:" + urllib.parse.quote(text)


def start(fake, tmp, policies: str = POLICIES, **settings):
    (tmp / "policies.yaml").write_text(policies)
    config = Settings(policies=tmp / "policies.yaml", upstream=fake.state.url + "/v1", block_log=tmp / "b.jsonl",
                      upstream_timeout_s=2.0, **settings)
    return serve(create_app(config, guard=ScriptedGuard()))


KEYS = [GatewayKey(id="app", key="k-app"), GatewayKey(id="garak", key="k-garak", input_block="completion")]


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    with start(fake, tmp_path_factory.mktemp("compat"), gateway_keys=KEYS) as url:
        yield url


def client_for(url: str, key: str = "k-app") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# --- 1. LiteLLM's SDK: an input block is a ContentPolicyViolationError ------------------------

@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warnings from inside litellm
def test_litellm_maps_an_input_block_to_content_policy_violation(gateway, provider, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: litellm's bundled cost map
    litellm = pytest.importorskip("litellm")  # in the `test` extra; the import takes seconds
    litellm.suppress_debug_info = True
    with pytest.raises(litellm.ContentPolicyViolationError) as info:
        litellm.completion(model=f"{provider}/echo", api_base=gateway + "/v1", api_key="k-app", num_retries=0,
                           messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])
    assert MESSAGE in str(info.value), "the policy's own message is kept"


def test_openai_sdk_still_sees_content_filter(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        client_for(gateway).chat.completions.create(model="echo", messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])
    err = info.value
    assert err.code == "content_filter" and err.param == "VIOLENCE"
    assert err.body["message"].startswith(MESSAGE + " (") and "safety system" in err.body["message"]
    assert err.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"  # Azure's, read by litellm's azure mapping


# --- 2. input_block: completion (per gateway key, per policy) --------------------------------

def test_key_with_input_block_completion_gets_a_200_reply(gateway):
    r = client_for(gateway, "k-garak").chat.completions.create(
        model="echo", n=2, messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])
    assert [c.message.content for c in r.choices] == [MESSAGE, MESSAGE]
    assert {c.finish_reason for c in r.choices} == {"content_filter"}
    assert r.usage.total_tokens == 0
    with pytest.raises(openai.BadRequestError):  # the other key keeps the policy's default: an error
        client_for(gateway).chat.completions.create(model="echo", messages=[{"role": "user", "content": "VIOLATE:VIOLENCE"}])


def test_policy_with_input_block_completion_streamed_and_not(gateway):
    client = client_for(gateway)  # the "app" key says nothing: the policy decides
    messages = [{"role": "user", "content": "VIOLATE:SOFTBLOCK"}]
    r = client.chat.completions.create(model="echo", messages=messages)
    assert r.choices[0].message.content == "Softly blocked." and r.choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model="echo", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "Softly blocked." and finishes == ["content_filter"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 0
    legacy = client.completions.create(model="echo", prompt="VIOLATE:SOFTBLOCK")
    assert legacy.choices[0].text == "Softly blocked." and legacy.choices[0].finish_reason == "content_filter"


def test_input_block_completion_on_the_responses_api(gateway):
    client = client_for(gateway, "k-garak")
    r = client.responses.create(model="echo", input="VIOLATE:VIOLENCE")
    assert r.status == "incomplete" and r.incomplete_details.reason == "content_filter" and r.output_text == MESSAGE
    with client.responses.stream(model="echo", input="VIOLATE:VIOLENCE") as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == MESSAGE and final.output_text == MESSAGE
    assert final.incomplete_details.reason == "content_filter"


# --- 3. a blocked chat stream keeps the message apart, and sends usage -----------------------

def test_blocked_stream_puts_the_message_in_refusal_not_content(gateway):
    client = client_for(gateway)
    chunks = list(client.chat.completions.create(model=say(PARTIAL), stream=True, messages=[{"role": "user", "content": "go"}]))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert content and PARTIAL.startswith(content) and "VIOLATE" not in content, "content is only released text"
    assert refusal == MESSAGE and chunks[-1].choices[0].finish_reason == "content_filter"
    # The SDK's stream helper raises its typed content-filter error for any `content_filter` finish;
    # the message it accumulated keeps the two apart.
    with pytest.raises(openai.ContentFilterFinishReasonError) as info:
        with client.chat.completions.stream(model=say(PARTIAL), messages=[{"role": "user", "content": "go"}]) as stream:
            stream.get_final_completion()
    message = info.value.completion.choices[0].message
    assert message.refusal == MESSAGE and message.content == content


def test_blocked_stream_sends_the_usage_chunk_when_asked(gateway):
    chunks = list(client_for(gateway).chat.completions.create(
        model=say(PARTIAL), stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "go"}]))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert usage.completion_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.model_extra.get("rsafe_estimated") is True
    assert any(c.choices and c.choices[0].finish_reason == "content_filter" for c in chunks)
    no_usage = list(client_for(gateway).chat.completions.create(
        model=say(PARTIAL), stream=True, messages=[{"role": "user", "content": "go"}]))
    assert all(c.usage is None for c in no_usage)


def test_block_message_content_mode_sets_it_apart(fake, tmp_path):
    policies = POLICIES.replace("first_window_chars: 16}", "first_window_chars: 16, block_message: content}")
    with start(fake, tmp_path, policies) as url:
        chunks = list(client_for(url).chat.completions.create(
            model=say(PARTIAL), stream=True, messages=[{"role": "user", "content": "go"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    released, _, message = text.partition("\n\n")
    assert message == MESSAGE and released and PARTIAL.startswith(released)
    assert all(c.choices[0].delta.refusal is None for c in chunks if c.choices)


# --- 4. /v1/moderations: OpenAI's category keys next to the policy ids ------------------------

def test_moderations_fill_openai_categories(gateway):
    client = client_for(gateway)
    result = client.moderations.create(input="VIOLATE:VIOLENCE").results[0]
    assert result.flagged and result.categories.violence is True and result.categories.violence_graphic is True
    assert result.categories.hate is False and result.categories.self_harm is False
    assert result.category_scores.violence == 1.0 and result.category_scores.hate == 0.0
    raw = result.to_dict()
    assert raw["categories"]["VIOLENCE"] is True, "the policy-id keys stay"
    assert set(OPENAI_CATEGORIES) <= set(raw["categories"]) and len(OPENAI_CATEGORIES) == 13
    assert all(isinstance(raw["categories"][k], bool) for k in OPENAI_CATEGORIES)
    safe = client.moderations.create(input="a kind word").results[0]
    assert not safe.flagged and safe.categories.violence is False


def test_default_policies_map_to_openai_categories():
    policies = PolicySet.load("policies.yaml").by_id
    assert {"violence", "illicit/violent"} <= set(policies["S1"].openai_categories)
    assert "sexual/minors" in policies["S4"].openai_categories
    assert "hate" in policies["S10"].openai_categories
    assert "self-harm" in policies["S11"].openai_categories
    assert policies["S13"].openai_categories == ()  # elections: no OpenAI category fits


# --- 5. GET /v1/models/{id} -----------------------------------------------------------------

@pytest.fixture(scope="module")
def models_upstream():
    """An upstream that has a per-model route (OpenAI, Ollama do; the fake, like vLLM, does not)."""
    seen: list[str] = []

    async def model_route(request: Request) -> JSONResponse:
        seen.append(request.path_params["name"])
        return JSONResponse({"id": request.path_params["name"], "object": "model", "created": 1, "owned_by": "up"})

    app = Starlette(routes=[Route("/v1/models/{name:path}", model_route)])
    with serve(app) as url:
        yield url, seen


def test_retrieve_a_model(fake, tmp_path, models_upstream):
    up_url, seen = models_upstream
    routes = [UpstreamRoute(match="alias-*", url=up_url + "/v1", model="real-model"),
              UpstreamRoute(match="claude-*", provider="litellm", model="anthropic/claude-x")]
    with start(fake, tmp_path, upstream_routes=routes) as url:
        client = client_for(url)
        assert client.models.retrieve("echo").id == "echo"  # the fake has no per-model route: found in its list
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("no-such-model")
        assert info.value.code == "model_not_found"
        model = client.models.retrieve("alias-1")
        assert model.id == "alias-1" and model.owned_by == "up" and seen == ["real-model"]
        assert client.models.retrieve("claude-3").id == "claude-3"  # a litellm route: answered from the config


# --- 6. a blocked Responses stream ends like an OpenAI refusal -------------------------------

def test_blocked_responses_stream_final_response_carries_the_refusal(gateway):
    client = client_for(gateway)
    kinds = []
    with client.responses.stream(model=say(PARTIAL), input="go") as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert kinds[-1] == "response.completed"
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    assert final.status == "incomplete" and final.incomplete_details.reason == "content_filter"
    parts = final.output[0].content
    assert parts[-1].type == "refusal" and parts[-1].refusal == MESSAGE
    assert final.output_text and PARTIAL.startswith(final.output_text) and "VIOLATE" not in final.output_text


def test_blocked_responses_stream_raw_events_are_consistent(gateway):
    """Every content part that was opened is closed, with the text the client was actually sent."""
    with client_for(gateway).responses.with_streaming_response.create(model=say(PARTIAL), input="go", stream=True) as r:
        events = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    (text_done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert text_done["text"] == deltas
    added = [(e["output_index"], e["content_index"]) for e in events if e["type"] == "response.content_part.added"]
    done = [(e["output_index"], e["content_index"]) for e in events if e["type"] == "response.content_part.done"]
    assert added == done == [(0, 0), (0, 1)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_openai_agents_sees_a_refusal(gateway):
    """openai-agents handles the block as it handles an OpenAI refusal: `ModelRefusalError` carrying
    the message (not `ModelBehaviorError`), which a `model_refusal` error handler can answer."""
    agents = pytest.importorskip("agents")  # openai-agents: not in the test extra (heavy); checked where installed
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="k-app", max_retries=0)
    agents.set_tracing_disabled(True)
    agent = agents.Agent(name="a", instructions="be brief",
                         model=agents.OpenAIResponsesModel(model=say(PARTIAL), openai_client=client))
    with pytest.raises(agents.ModelRefusalError) as info:
        result = agents.Runner.run_streamed(agent, "go")
        async for _ in result.stream_events():
            pass
    assert info.value.refusal == MESSAGE
    result = agents.Runner.run_streamed(agent, "go", error_handlers={"model_refusal": lambda data: data.error.refusal})
    async for _ in result.stream_events():
        pass
    assert result.final_output == MESSAGE
    await client.close()
