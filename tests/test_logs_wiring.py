"""The operations features as shipped: `rsafe logs`, `rsafe policies test`, /admin in create_app,
the policy-store metrics and retention in the Gateway (wired by gateway/commands/cli.py, app.py, service.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes.blocklogs import write_log
from tests.fakes.guard import ScriptedGuard

ROOT = Path(__file__).resolve().parent.parent


def rsafe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.commands.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)


def test_rsafe_logs_and_policies_test_are_commands(tmp_path):
    log = tmp_path / "blocks.jsonl"
    write_log(log, 50, files=2)
    r = rsafe("logs", "tail", "--log", str(log), "-n", "3")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3  # piped: JSON lines
    r = rsafe("policies", "test", "--help")
    assert r.returncode == 0 and "suite" in r.stdout.lower()


def test_admin_routes_metrics_and_retention_are_wired(tmp_path, policies_path):
    settings = Settings(policies=policies_path, block_log=tmp_path / "blocks.jsonl", admin_key="k-wiring",
                        block_log_retention_days=7)
    with TestClient(create_app(settings, guard=ScriptedGuard())) as c:
        assert c.get("/admin").status_code == 401
        assert c.get("/admin", headers={"x-admin-key": "k-wiring"}).status_code == 200
        metrics = c.get("/metrics").text
        assert 'rsafe_policy_reloads_total{result="rejected"} 0.0' in metrics
        assert "rsafe_policies_info{" in metrics
        assert c.app.state.gateway.retention.days == 7
