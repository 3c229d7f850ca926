"""A policy can require `input_mode: before`: what it covers never reaches the upstream, even when
the file's `settings.input_mode` is `concurrent`. And an input block carries the x-rsafe-* headers.
Real servers on loopback (the gateway, the scripted fake upstream), the official openai client."""

from __future__ import annotations

import asyncio
import random
import string
import time

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from guard.errors import PolicyError
from guard.policies import PolicySet
from tests.conftest import TEST_POLICIES
from tests.fakes.guard import ScriptedGuard
from tests.servers import serve

NEVER_UPSTREAM = """
  - id: NEVER_UPSTREAM
    description: Patient records that must never leave the company.
    applies_to: input
    input_mode: before
    message: Blocked by NEVER_UPSTREAM.
routes:
  - model: "slow-public*"
    disable: [NEVER_UPSTREAM]
"""


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("input-mode")
    policies = TEST_POLICIES.replace("timeout_s: 0.5", "timeout_s: 20")  # checks below wait up to 15 s
    assert policies != TEST_POLICIES
    (tmp / "policies.yaml").write_text(policies + NEVER_UPSTREAM)  # settings.input_mode: concurrent
    settings = Settings(policies=tmp / "policies.yaml", upstream=fake.state.url + "/v1", block_log=tmp / "b.jsonl")
    with serve(create_app(settings, guard=UpstreamWaitingGuard(fake))) as url:
        yield url


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway + "/v1", api_key="k", max_retries=0)


class UpstreamWaitingGuard(ScriptedGuard):
    """Takes 1 s per check; on a text with `WAIT_UPSTREAM <marker>` it holds its verdict until the
    fake upstream has received that marker (at most 15 s). So the concurrent-mode control does not
    hang on timing: the upstream call, if it is made during the check, always arrives before the
    block, however loaded the machine is; if it is never made, the check ends after 15 s and the
    test fails."""

    def __init__(self, fake) -> None:
        super().__init__(delay=1.0)
        self.fake = fake

    async def _check(self, request):
        _, found, rest = request.content.partition("WAIT_UPSTREAM ")
        deadline = time.monotonic() + 15
        while found and not _seen(self.fake, rest.split()[0]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return await super()._check(request)


def _marker(kind: str) -> str:
    """A unique marker with no digits: a run of 13-19 digits can pass the Luhn check, and the
    SECRETS policy then redacts it as a card number before the upstream sees it (this test failed
    in CI twice on exactly that, with time_ns() markers)."""
    return f"{kind}-" + "".join(random.choices(string.ascii_lowercase, k=16))


def _seen(fake, marker: str) -> bool:
    return any(marker in str(call["body"]) for call in fake.state.calls)


def _blocked(client, model: str, text: str) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return info.value


def test_a_before_policy_blocks_before_the_upstream_sees_anything(client, fake):
    marker = _marker("record")
    err = _blocked(client, "slow", f"VIOLATE:NEVER_UPSTREAM {marker}")
    assert err.code == "content_filter" and err.param == "NEVER_UPSTREAM"
    time.sleep(0.5)  # time for a concurrent call to have arrived, had one been made
    assert not _seen(fake, marker), "the upstream saw a request a before-policy blocked"


def test_every_request_it_covers_is_checked_first(client, fake):
    """Not only the before-policy's own blocks: while it is active, the whole check comes first."""
    marker = _marker("violent")
    _blocked(client, "slow", f"VIOLATE:VIOLENCE {marker}")
    time.sleep(0.5)
    assert not _seen(fake, marker)


def test_where_a_route_disables_it_the_upstream_is_called_concurrently(client, fake):
    """The control: the same block on a model whose route disables the before-policy runs the
    default concurrent mode, so the upstream call had started (and was cancelled)."""
    marker = _marker("concurrent")
    _blocked(client, "slow-public", f"VIOLATE:VIOLENCE WAIT_UPSTREAM {marker}")
    assert _seen(fake, marker), "concurrent mode starts the upstream call during the check"


def test_allowed_requests_still_reach_the_upstream(client, fake):
    r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "hello there"


def test_an_input_block_carries_the_rsafe_headers(gateway, client):
    ready = httpx.get(gateway + "/readyz").json()
    err = _blocked(client, "echo", "VIOLATE:VIOLENCE")
    headers = err.response.headers
    assert headers["x-rsafe-input-decision"] == "block"
    assert headers["x-rsafe-policy-version"] == ready["policy_version"]
    assert "VIOLENCE" in headers["x-rsafe-policies-checked"].split(",")
    assert headers["x-should-retry"] == "false" and headers["x-request-id"].startswith("req_")
    # a patterns block (decided before the model guard runs) carries them too
    err = _blocked(client, "slow-public", "a forbidden-word here")
    assert err.param == "BANNED" and err.response.headers["x-rsafe-input-decision"] == "block"
    assert "BANNED" in err.response.headers["x-rsafe-policies-checked"].split(",")


def test_an_allowed_answer_carries_them_as_before(gateway):
    r = httpx.post(gateway + "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-rsafe-input-decision"] == "allow"
    assert r.headers["x-rsafe-output-decision"] == "allow" and r.headers["x-rsafe-policy-version"]


def test_input_mode_on_a_policy_takes_only_before():
    with pytest.raises(PolicyError, match=r"policies\.6\.input_mode"):
        PolicySet.from_yaml(TEST_POLICIES + NEVER_UPSTREAM.replace("input_mode: before", "input_mode: concurrent"))
