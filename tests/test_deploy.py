"""docker-compose.yml and the Dockerfile, checked against what the code accepts (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
import yaml

from gateway.commands.cli import app
from gateway.settings import Settings
from guard.registry import available

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVE = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
SERVE_OPTIONS = {opt for p in SERVE.params for opt in p.opts if opt.startswith("--")}


def gateways():
    return {name: s for name, s in COMPOSE["services"].items() if name.startswith("gateway")}


def test_profiles_cpu_and_gpu():
    profiles = {name: tuple(s.get("profiles", ())) for name, s in COMPOSE["services"].items()}
    assert profiles == {"gateway": ("cpu",), "guard": ("gpu",), "gateway-gpu": ("gpu",)}


@pytest.mark.parametrize("name", sorted(gateways()))
def test_gateway_command_is_accepted_by_the_cli(name):
    command = gateways()[name]["command"]
    assert command[:2] == ["rsafe", "serve"]
    flags = [c for c in command[2:] if c.startswith("--")]
    assert set(flags) <= SERVE_OPTIONS, set(flags) - SERVE_OPTIONS
    ctx = SERVE.make_context("serve", command[2:])  # raises on a bad flag or value
    assert ctx.params["port"] == 8080 and str(ctx.params["policies"]) == "/config/policies.yaml"
    assert "8080:8080" in gateways()[name]["ports"]
    mounts = {v.rsplit(":", 2)[1] if v.endswith(":ro") else v.rsplit(":", 1)[1] for v in gateways()[name]["volumes"]}
    # the folder holding policies.yaml, not the file: a save by rename must reach the container
    assert "/config" in mounts and "/config/policies.yaml" not in mounts and "/logs" in mounts


@pytest.mark.parametrize("name", sorted(gateways()))
def test_gateway_environment_names_real_settings(name):
    fields = {f"RSAFE_{f.upper()}" for f in Settings.model_fields}
    env = gateways()[name]["environment"]
    assert set(env) <= fields, set(env) - fields
    guard = env.get("RSAFE_GUARD", "")
    default = re.sub(r"\$\{[A-Z_]+:-(\w+)\}", r"\1", guard)
    assert not default or default in available()


def test_gpu_gateway_points_at_the_guard_service():
    guard = COMPOSE["services"]["guard"]
    port = guard["command"][guard["command"].index("--port") + 1]
    env = COMPOSE["services"]["gateway-gpu"]["environment"]
    assert env["RSAFE_GUARD_URL"] == f"http://guard:{port}/v1"
    served = guard["command"][guard["command"].index("--served-model-name") + 1]
    assert env["RSAFE_GUARD_MODEL"] == served
    assert COMPOSE["services"]["gateway-gpu"]["depends_on"]["guard"]["condition"] == "service_healthy"


def test_dockerfile_matches():
    text = (ROOT / "Dockerfile").read_text()
    assert "EXPOSE 8080" in text and "torch==2.13.0" in text
    cmd = re.search(r'^CMD (\[.*\])$', text, re.M)
    assert cmd, "Dockerfile needs an exec-form CMD"
    args = yaml.safe_load(cmd.group(1))
    assert args[:2] == ["rsafe", "serve"]
    SERVE.make_context("serve", args[2:])
    for path in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / path).exists(), path
