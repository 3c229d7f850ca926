"""Which credentials reach whom: the upstream key, the client's own key, gateway keys, the guard key.

Real HTTP: a gateway on loopback (patterns guard), the fake upstream records the headers it got."""

from __future__ import annotations

import openai
import pytest

from gateway.app import create_app
from gateway.service import guard_settings
from gateway.settings import GatewayKey, Settings
from guard.policies import PolicySet
from tests.servers import serve


@pytest.fixture
def fake(fake_server):
    fake_server.state.calls.clear()
    return fake_server


def _gateway(fake, tmp_path, policies_path, **settings):
    return serve(create_app(Settings(policies=policies_path, upstream=fake.state.url + "/v1",
                                     block_log=tmp_path / "blocks.jsonl", guard="patterns", **settings)))


def _ask(url: str, key: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])


def test_without_an_upstream_key_the_clients_own_key_is_forwarded(fake, tmp_path, policies_path):
    with _gateway(fake, tmp_path, policies_path) as url:
        _ask(url, "sk-client-own")
    assert fake.state.calls[-1]["headers"]["authorization"] == "Bearer sk-client-own"


def test_a_gateway_key_is_never_forwarded_upstream(fake, tmp_path, policies_path):
    """With gateway keys, the client's Authorization is the gateway's credential, not the provider's."""
    keys = [GatewayKey(id="team-a", key="gw-key-aaa")]
    with _gateway(fake, tmp_path, policies_path, gateway_keys=keys) as url:
        _ask(url, "gw-key-aaa")
    sent = fake.state.calls[-1]["headers"]
    assert "gw-key-aaa" not in sent.get("authorization", "")


def test_the_upstream_key_replaces_the_clients(fake, tmp_path, policies_path):
    with _gateway(fake, tmp_path, policies_path, upstream_api_key="sk-upstream-XYZ") as url:
        _ask(url, "sk-client-own")
    assert fake.state.calls[-1]["headers"]["authorization"] == "Bearer sk-upstream-XYZ"


def test_guard_api_key_from_the_environment_reaches_the_guard_options(monkeypatch, policies_path):
    monkeypatch.setenv("RSAFE_GUARD_API_KEY", "guard-secret-1")
    monkeypatch.setenv("RSAFE_GUARD_URL", "http://127.0.0.1:9/v1")
    settings = Settings(policies=policies_path)
    gs = guard_settings(settings, PolicySet.load(policies_path))
    assert gs.options["api_key"] == "guard-secret-1" and gs.options["url"] == "http://127.0.0.1:9/v1"
    from guard.registry import build_guard

    guard = build_guard("rsafe", gs.options, PolicySet.load(policies_path))
    assert guard.engine._client.headers["authorization"] == "Bearer guard-secret-1"
