"""`rsafe policies test`: suites in YAML and JSONL, pass/fail judgement and exit codes.

The runner's own tests use deterministic guards: the `patterns` backend with
benchmarks/policies_patterns.yaml, and the ScriptedGuard for model policies."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from gateway.commands.policytest import Case, SuiteError, load_suite, run_suite, unknown_policies
from gateway.commands.policytest_cli import policies_test_command
from guard.policies import Direction, PolicySet
from tests.fakes.guard import ScriptedGuard

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "benchmarks" / "policies_patterns.yaml"
DEFAULT_SUITE = ROOT / "tests" / "policy_suites" / "default.yaml"

app = typer.Typer()
policies_app = typer.Typer()
policies_app.command("test")(policies_test_command)
app.add_typer(policies_app, name="policies")
runner = CliRunner()

PASSING = """
policies: policies.yaml
cases:
  - {name: email, text: "mail bob@corp.example today", expect: rewrite, policies: [SECRETS]}
  - {text: "say forbidden-word now", expect: block, policies: BLOCKLIST, exact: true}
  - {text: "a card 4111 1111 1111 1111 in a reply", direction: output, context: "pay?", expect: rewrite, policies: [SECRETS]}
  - {text: "hello there", expect: allow}
"""


def test(*args: str):
    return runner.invoke(app, ["policies", "test", *args], catch_exceptions=False)


test.__test__ = False  # a helper, not a test


@pytest.fixture
def suite_dir(tmp_path):
    (tmp_path / "policies.yaml").write_text(PATTERNS.read_text())
    return tmp_path


def results(output: str) -> tuple[list[dict], dict]:
    rows = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return rows[:-1], rows[-1]["summary"]


def test_all_pass_exit_0(suite_dir):
    (suite_dir / "suite.yaml").write_text(PASSING)
    r = test(str(suite_dir / "suite.yaml"))
    assert r.exit_code == 0, r.output
    rows, summary = results(r.stdout)
    assert summary["passed"] == 4 and summary["failed"] == 0 and summary["guard"] == "patterns only"
    assert [x["decision"] for x in rows] == ["rewrite", "block", "rewrite", "allow"]


def test_a_wrong_expectation_fails_exit_1(suite_dir):
    (suite_dir / "suite.yaml").write_text(PASSING + '  - {text: "hello forbidden-word", expect: allow}\n'
                                          '  - {text: "x@y.io", expect: rewrite, policies: [BLOCKLIST]}\n')
    r = test(str(suite_dir / "suite.yaml"))
    assert r.exit_code == 1
    rows, summary = results(r.stdout)
    assert summary["failed"] == 2
    assert rows[4]["why"] == "expected allow, got block"
    assert rows[5]["why"] == "BLOCKLIST did not fire"


def test_exact_rejects_extra_policies(suite_dir):
    (suite_dir / "suite.yaml").write_text(
        'policies: policies.yaml\ncases:\n  - {text: "forbidden-word and a@b.io", expect: block, policies: [BLOCKLIST], exact: true}\n')
    r = test(str(suite_dir / "suite.yaml"))
    assert r.exit_code == 1 and "unexpected SECRETS" in r.stdout


def test_jsonl_suite_and_policies_option(suite_dir):
    path = suite_dir / "suite.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in [
        {"text": "forbidden-word", "expect": "block", "policies": ["BLOCKLIST"]},
        {"text": "fine", "decision": "allow"},
    ]) + "\n")
    r = test(str(path), "--policies", str(PATTERNS))
    assert r.exit_code == 0, r.output
    assert results(r.stdout)[1]["cases"] == 2


@pytest.mark.parametrize("content,message", [
    ("cases: []\n", "no cases"),
    ("cases:\n  - {text: hi}\n", "`expect` must be one of"),
    ("cases:\n  - {text: hi, expect: allow, direction: sideways}\n", "`direction` is input or output"),
    ("cases:\n  - {text: hi, expect: allow, colour: red}\n", "unknown field(s) colour"),
    ("cases:\n  - {expect: allow}\n", "`text` is required"),
    ("policies: policies.yaml\ncases:\n  - {text: hi, expect: block, policies: [NOPE]}\n", "does not define: NOPE"),
    ("cases: [unclosed\n", "not valid YAML"),
])
def test_bad_suites_exit_2_with_a_reason(suite_dir, content, message):
    (suite_dir / "suite.yaml").write_text(content)
    r = test(str(suite_dir / "suite.yaml"), "--policies", str(suite_dir / "policies.yaml"))
    assert r.exit_code == 2 and message in r.output, r.output


def test_missing_files_exit_2(suite_dir):
    assert test(str(suite_dir / "nope.yaml")).exit_code == 2
    (suite_dir / "suite.yaml").write_text(PASSING)
    r = test(str(suite_dir / "suite.yaml"), "--policies", str(suite_dir / "missing.yaml"))
    assert r.exit_code == 2


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a", "expect": "allow"}\n{oops\n')
    with pytest.raises(SuiteError, match=r"s.jsonl:2: not JSON"):
        load_suite(path)


async def test_model_policies_with_scripted_guard_and_guard_failure(policies_path):
    policy_set = PolicySet.load(policies_path)
    cases = [
        Case("VIOLATE:VIOLENCE now", "block", policies=("VIOLENCE",)),
        Case("VIOLATE:FLAGME", "flag", policies=("FLAGME",)),
        Case("a reply VIOLATE:REPLACE", "rewrite", Direction.OUTPUT, ("REPLACE",), context="q"),
        Case("GUARD_CRASH", "block"),  # a guard failure is never the expected block
        Case("all good", "allow"),
    ]
    got = await run_suite(cases, policy_set, ScriptedGuard())
    assert [r.passed for r in got] == [True, True, True, False, True]
    assert got[3].decision == "error" and got[3].why == "expected block, got error" and got[3].error
    assert got[0].reasoning == "scripted: VIOLENCE"


def test_default_suite_is_valid_for_the_default_policies():
    suite = load_suite(DEFAULT_SUITE)
    assert suite.policies == (ROOT / "policies.yaml").resolve()
    policy_set = PolicySet.load(suite.policies)
    assert unknown_policies(suite, policy_set) == []
    covered = {p for c in suite.cases for p in c.policies}
    model_ids = {p.id for p in policy_set.policies if p.engine == "model"}
    assert len(covered & model_ids) >= 12  # nearly every hazard category has a case
    assert sum(c.expect == "allow" for c in suite.cases) >= 6  # and ordinary traffic must pass


@pytest.mark.parametrize("policy", ["SECRETS", "PROMPT_ATTACK_PHRASES"])
async def test_default_suite_patterns_cases_pass_deterministically(policy):
    """The patterns cases of the shipped suite, with a guard that passes every model policy."""
    suite = load_suite(DEFAULT_SUITE)
    policy_set = PolicySet.load(suite.policies)
    cases = [c for c in suite.cases if c.policies == (policy,)]
    got = await run_suite(cases, policy_set, ScriptedGuard())  # model policies: nothing violated
    assert cases and all(r.passed for r in got), [r.why for r in got]
