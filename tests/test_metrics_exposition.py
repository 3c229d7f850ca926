"""`/metrics` after real traffic, parsed with the Prometheus client's own parser."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import Metrics
from gateway.policystore import PolicyStore
from gateway.settings import Settings
from tests.conftest import TEST_POLICIES
from tests.fakes.guard import ScriptedGuard
from tests.fakes.upstream import create_fake_upstream
from tests.servers import serve

POLICY_IDS = {"VIOLENCE", "FLAGME", "SOFT", "REPLACE", "SECRETS", "BANNED"}


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict, name: str, **labels) -> float:
    return sum(s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    (tmp / "p.yaml").write_text(TEST_POLICIES)
    upstream = create_fake_upstream()
    with serve(upstream) as url:
        settings = Settings(policies=tmp / "p.yaml", upstream=url + "/v1", block_log=tmp / "blocks.jsonl",
                            upstream_api_key="sk-upstream-metrics-secret")
        with TestClient(create_app(settings, guard=ScriptedGuard()), raise_server_exceptions=False) as c:
            def chat(content, model="echo", **extra):
                return c.post("/v1/chat/completions",
                              json={"model": model, "messages": [{"role": "user", "content": content}], **extra})

            assert chat("hello").status_code == 200
            assert chat("VIOLATE:VIOLENCE please").status_code == 400
            assert chat("VIOLATE:FLAGME hm").status_code == 200
            assert chat("mail bob@corp.example").status_code == 200
            assert chat("GUARD_CRASH").status_code == 400  # closed policies block
            assert chat("x", model="say:GUARD_CRASH").status_code == 200  # output: SOFT fails open, the rest closed
            assert chat("x", model="error").status_code >= 500
            with c.stream("POST", "/v1/chat/completions", json={
                    "model": "echo", "stream": True,
                    "messages": [{"role": "user", "content": "a long enough streamed answer " * 6}]}) as r:
                body = b"".join(r.iter_bytes())
            assert b"[DONE]" in body
            text = c.get("/metrics").text
    return samples(text), text


def test_requests_by_route_and_status(scraped):
    found, _ = scraped
    assert value(found, "rsafe_requests_total", route="chat_completions", status="200") >= 4
    assert value(found, "rsafe_requests_total", route="chat_completions", status="400") == 2


def test_decisions_by_policy_direction_action(scraped):
    found, _ = scraped
    assert value(found, "rsafe_decisions_total", policy="VIOLENCE", direction="input", action="block") >= 2
    # once violated, once by its closed failure mode (GUARD_CRASH)
    assert value(found, "rsafe_decisions_total", policy="FLAGME", direction="input", action="flag") == 2
    assert value(found, "rsafe_decisions_total", policy="SECRETS", direction="input", action="rewrite") == 1
    assert value(found, "rsafe_decisions_total", policy="SOFT", direction="output", action="fail_open") == 1


def test_failure_modes_counted_separately(scraped):
    found, _ = scraped
    assert value(found, "rsafe_failure_mode_activations_total", mode="open") == 1
    assert value(found, "rsafe_failure_mode_activations_total", mode="closed") >= 3


def test_guard_latency_histogram_and_cache(scraped):
    found, _ = scraped
    assert value(found, "rsafe_guard_latency_seconds_count", backend="scripted", direction="input") >= 4
    inf = value(found, "rsafe_guard_latency_seconds_bucket", backend="scripted", direction="input", le="+Inf")
    assert inf == value(found, "rsafe_guard_latency_seconds_count", backend="scripted", direction="input")
    assert value(found, "rsafe_guard_cache_lookups_total", backend="scripted", result="miss") >= 4
    assert value(found, "rsafe_guard_cache_lookups_total", result="hit") == 0  # ScriptedGuard has no cache


def test_upstream_latency_and_errors(scraped):
    found, _ = scraped
    assert value(found, "rsafe_upstream_latency_seconds_count", route="chat_completions") >= 5
    assert sum(s.value for s in found.get("rsafe_upstream_errors_total", [])) >= 1


def test_stream_windows_and_holdback(scraped):
    found, _ = scraped
    assert value(found, "rsafe_stream_windows_checked_total") >= 2
    assert value(found, "rsafe_stream_holdback_seconds_count") >= 1


def test_label_values_are_bounded(scraped):
    found, text = scraped
    for name, rows in found.items():
        for s in rows:
            for key, v in s.labels.items():
                assert "req_" not in v and len(v) < 64, (name, key, v)
                if key == "policy":
                    assert v in POLICY_IDS
                if key == "direction":
                    assert v in ("input", "output")
    assert "sk-upstream-metrics-secret" not in text


async def test_policy_reloads_ok_and_rejected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(TEST_POLICIES)
    store = PolicyStore(path)
    metrics = Metrics()
    metrics.bind_store(store)

    def scrape():
        return samples(metrics.render().decode())

    found = scrape()
    assert value(found, "rsafe_policy_reloads_total", result="ok") == 0
    assert value(found, "rsafe_policies_info", version=store.current.version) == 1
    assert value(found, "rsafe_policies_reload_failing") == 0

    await asyncio.sleep(0.01)  # a new mtime
    path.write_text("version: 1\npolicies:\n  - id: S1\n    action: obliterate\n")
    assert not await store.reload_if_changed()
    found = scrape()
    assert value(found, "rsafe_policy_reloads_total", result="rejected") == 1
    assert value(found, "rsafe_policies_reload_failing") == 1

    path.write_text(TEST_POLICIES.replace("Things to watch.", "Things to watch closely."))
    assert await store.reload_if_changed()
    found = scrape()
    assert value(found, "rsafe_policy_reloads_total", result="ok") == 1
    assert value(found, "rsafe_policies_reload_failing") == 0
    assert value(found, "rsafe_policies_loaded_timestamp_seconds") == pytest.approx(store.loaded_at)
    assert value(found, "rsafe_policies_info", version=store.current.version) == 1
