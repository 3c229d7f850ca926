from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.policystore import PolicyStore
from guard.errors import PolicyError
from guard.policies import Action, Direction, PolicySet

ROOT = Path(__file__).resolve().parent.parent


def test_default_policies_file_is_valid_and_covers_the_taxonomy():
    ps = PolicySet.load(ROOT / "policies.yaml")
    ids = [p.id for p in ps.policies]
    assert ids[:14] == [f"S{i}" for i in range(1, 15)]
    assert "SECRETS" in ids
    assert ps.settings.guard.backend == "embedded"
    assert ps.by_id["SECRETS"].action is Action.REWRITE


def test_error_names_line_and_field(tmp_path):
    text = "version: 1\npolicies:\n  - id: A\n    description: ok\n  - id: B\n    description: x\n    failure_mode: sideways\n"
    with pytest.raises(PolicyError) as info:
        PolicySet.from_yaml(text, "p.yaml")
    assert "p.yaml:7: policies.1.failure_mode" in str(info.value)


def test_yaml_syntax_error_names_line():
    with pytest.raises(PolicyError) as info:
        PolicySet.from_yaml("version: 1\npolicies: [\n  - id: A\n", "p.yaml")
    assert str(info.value).startswith("p.yaml:") and "not valid YAML" in str(info.value)


@pytest.mark.parametrize(
    "body, needle",
    [
        ("policies:\n  - id: A\n", "a model policy needs a description"),
        ("policies:\n  - id: A\n    engine: patterns\n", "needs at least one of detectors"),
        ("policies:\n  - id: A\n    description: x\n    action: rewrite\n    rewrite: redact\n", "rewrite: redact needs engine: patterns"),
        ("policies:\n  - id: A\n    description: x\n  - id: A\n    description: y\n", "duplicate policy ids: A"),
        ("policies:\n  - id: A\n    engine: patterns\n    regex: ['(']\n", "invalid regular expression"),
        ("policies:\n  - id: A\n    description: x\nroutes:\n  - model: gpt*\n    disable: [ZZ]\n", "unknown policy ids: ZZ"),
        ("version: 7\npolicies:\n  - id: A\n    description: x\n", "unsupported policies.yaml version 7"),
        ("policies:\n  - id: A\n    description: x\n    colour: red\n", "policies.0.colour: Extra inputs are not permitted"),
    ],
)
def test_validation_messages(body, needle):
    with pytest.raises(PolicyError) as info:
        PolicySet.from_yaml(body, "p.yaml")
    assert needle in str(info.value)


def test_routes_override_by_model_and_key():
    ps = PolicySet.from_yaml(
        """
policies:
  - {id: A, description: a}
  - {id: B, description: b, applies_to: output}
routes:
  - {model: "gpt-4*", disable: [A]}
  - {key: team-x, overrides: {B: {action: flag}}}
"""
    )
    assert [p.id for p in ps.active(Direction.INPUT, "gpt-4o", None)] == []
    assert [p.id for p in ps.active(Direction.INPUT, "llama", None)] == ["A"]
    assert ps.active(Direction.OUTPUT, "llama", "team-x")[1].action is Action.FLAG
    assert ps.active(Direction.OUTPUT, "llama", "team-y")[1].action is Action.BLOCK


def test_version_changes_with_content():
    a = PolicySet.from_yaml("policies:\n  - {id: A, description: a}\n")
    b = PolicySet.from_yaml("policies:\n  - {id: A, description: b}\n")
    assert a.version != b.version


async def test_reload_keeps_last_good(policies_path):
    store = PolicyStore(policies_path, poll_s=0.05)
    good = store.current.version
    policies_path.write_text("policies:\n  - id: A\n    action: nope\n")
    assert await store.reload_if_changed() is False
    assert store.current.version == good
    assert "policies.0.action" in (store.last_error or "")
    assert store.reloads["rejected"] == 1
    policies_path.write_text("policies:\n  - {id: A, description: fine now}\n")
    await asyncio.sleep(0.01)
    assert await store.reload_if_changed() is True
    assert [p.id for p in store.current.policies] == ["A"]
    assert store.last_error is None
