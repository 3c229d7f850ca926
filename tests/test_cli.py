"""The `rsafe` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import free_port

RSAFE = str(Path(sys.executable).parent / "rsafe")
ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "benchmarks" / "policies_patterns.yaml"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([RSAFE, *args], capture_output=True, text=True, input=stdin, timeout=120, cwd=ROOT)


def test_validate_ok():
    from guard.policies import PolicySet

    r = run("policies", "validate", "policies.yaml")
    n = len(PolicySet.load(ROOT / "policies.yaml").policies)  # S1-S14 and SECRETS
    assert r.returncode == 0 and f"OK - {n} policies" in r.stdout and n >= 15


def test_validate_broken_names_line_and_field(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\npolicies:\n  - id: S1\n    description: x\n    action: obliterate\n")
    r = run("policies", "validate", str(bad))
    assert r.returncode == 1
    assert f"{bad}:5: policies.0.action" in r.stderr


def test_check_blocked_exit_3_and_json():
    r = run("check", "--policies", str(PATTERNS), "--role", "input", "please say forbidden-word")
    assert r.returncode == 3, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"] == "block" and out["policies"][0]["policy"] == "BLOCKLIST"


def test_check_allowed_and_rewrite_from_stdin():
    r = run("check", "--policies", str(PATTERNS), "--role", "output", "-", stdin="mail me: a@b.io")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"] == "rewrite" and out["rewritten"] == "mail me: [REDACTED:email]"


def test_check_unknown_backend_is_a_clear_error():
    r = run("check", "--guard", "nonsense", "hello")
    assert r.returncode == 2 and "unknown guard backend 'nonsense'" in r.stderr


def test_serve_starts_and_answers_healthz(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [RSAFE, "serve", "--port", str(port), "--policies", str(PATTERNS), "--block-log", str(tmp_path / "b.jsonl")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        import time

        deadline = time.time() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_invalid_policies(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("policies: 3\n")
    r = run("serve", "--policies", str(bad))
    assert r.returncode == 2 and "policies" in r.stderr


def test_guard_serve_is_a_moderations_service(tmp_path):
    import time

    port = free_port()
    proc = subprocess.Popen(
        [RSAFE, "guard", "serve", "--port", str(port), "--policies", str(PATTERNS), "--block-log", str(tmp_path / "b.jsonl")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.2)
        r = httpx.post(base + "/v1/moderations", json={"input": ["fine", "say forbidden-word"]}).json()
        assert [x["flagged"] for x in r["results"]] == [False, True]
        assert r["results"][1]["categories"]["BLOCKLIST"] is True
        assert httpx.post(base + "/v1/chat/completions", json={}).status_code == 404
    finally:
        proc.terminate()
        proc.wait(10)


def test_check_url_asks_a_running_gateway_and_prints_the_local_report(tmp_path):
    from tests.procs import rsafe_server

    with rsafe_server("guard", "serve", "--policies", str(PATTERNS), "--block-log", str(tmp_path / "b.jsonl")) as (base, _):
        for role, text, code in (("input", "please say forbidden-word", 3), ("output", "mail me: a@b.io", 0)):
            local = run("check", "--policies", str(PATTERNS), "--role", role, text)
            remote = run("check", "--url", base, "--role", role, text)
            assert (local.returncode, remote.returncode) == (code, code), remote.stderr
            a, b = json.loads(local.stdout), json.loads(remote.stdout)
            a.pop("latency_ms"), b.pop("latency_ms")
            assert a == b  # the same report, made by the gateway's pipeline
        assert json.loads(remote.stdout)["rewritten"] == "mail me: [REDACTED:email]"
        # the base URL with /v1, and standard input
        r = run("check", "--url", base + "/v1", "-", stdin="say forbidden-word now")
        assert r.returncode == 3 and json.loads(r.stdout)["policies"][0]["policy"] == "BLOCKLIST"
        # the extension is validated like any other field: an OpenAI-shaped 400
        bad = httpx.post(base + "/v1/moderations", json={"input": "x", "rsafe_check": {"direction": "sideways"}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "rsafe_check.direction"
        # a plain moderations call is unchanged (no report)
        plain = httpx.post(base + "/v1/moderations", json={"input": "say forbidden-word"}).json()
        assert "rsafe_check" not in plain and plain["results"][0]["categories"]["BLOCKLIST"] is True
        # local guard flags make no sense against a gateway
        r = run("check", "--url", base, "--guard", "patterns", "hi")
        assert r.returncode == 2 and "do not apply with --url" in r.stderr


def test_check_url_unreachable_is_exit_2():
    r = run("check", "--url", f"http://127.0.0.1:{free_port()}", "hello")
    assert r.returncode == 2 and "cannot reach" in r.stderr and not r.stdout
