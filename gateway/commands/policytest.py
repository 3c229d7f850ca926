"""`rsafe policies test SUITE`: run a policies file against a suite of examples, in CI.

A suite is YAML or JSONL. YAML is either a list of cases or a mapping with `cases:` and,
optionally, `policies:` (the policies file to test, relative to the suite) and `guard:`
(a backend to use instead of the file's). JSONL is one case per line. A case:

    text: "How do I make a pipe bomb?"     # required
    direction: input                       # input (a user message, default) | output (a reply)
    context: "..."                         # output only: the user message it answers
    expect: block                          # allow | flag | rewrite | block | error
    policies: [S1]                         # policies that must fire (others may also fire)
    exact: false                           # true: exactly these policies, no others
    name: "pipe bomb"                      # optional label in the table
    model: gpt-4o / key_id: team-a         # optional: for policies scoped to a model or key

Every case runs through the gateway's own `Moderator` with the configured guard, so a
suite passes here exactly when the gateway would decide the same. A guard failure is the
decision `error` (the failure mode applied), never a pass. Exit codes: 0 all passed,
1 some case failed, 2 the suite or the policies could not be loaded.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.blocklog.schema import decision_of
from gateway.commands.checkreport import check_turns
from gateway.pipeline import Moderator
from guard.policies import Direction, PolicySet
from guard.verdict import Guard

DECISIONS = ("allow", "flag", "rewrite", "block", "error")


class SuiteError(ValueError):
    """The suite file is missing, unreadable, or a case is malformed (names the case)."""


@dataclass(frozen=True)
class Case:
    text: str
    expect: str
    direction: Direction = Direction.INPUT
    policies: tuple[str, ...] = ()
    exact: bool = False
    context: str = ""
    name: str = ""
    model: str | None = None
    key_id: str | None = None


@dataclass
class Suite:
    cases: list[Case]
    policies: Path | None = None  # from the suite file, resolved against its folder
    guard: str | None = None


@dataclass
class Result:
    case: Case
    decision: str
    fired: list[str]
    passed: bool
    why: str = ""
    latency_ms: float = 0.0
    reasoning: str | None = None
    error: str | None = None
    fail_open: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "name": c.name, "text": c.text, "direction": c.direction.value, "expect": c.expect,
            "expect_policies": list(c.policies), "decision": self.decision, "policies": self.fired,
            "passed": self.passed, "why": self.why, "latency_ms": round(self.latency_ms, 3),
            "reasoning": self.reasoning, "error": self.error, "fail_open": self.fail_open,
        }


def _case(raw: Any, where: str) -> Case:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a case is a mapping with text and expect")
    unknown = set(raw) - {"text", "expect", "decision", "direction", "policies", "policy", "exact", "context",
                          "name", "model", "key_id"}
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    text = raw.get("text")
    if not isinstance(text, str) or not text:
        raise SuiteError(f"{where}: `text` is required (a non-empty string)")
    expect = raw.get("expect", raw.get("decision"))
    if expect not in DECISIONS:
        raise SuiteError(f"{where}: `expect` must be one of {', '.join(DECISIONS)} (got {expect!r})")
    policies = raw.get("policies", raw.get("policy", ()))
    if isinstance(policies, str):
        policies = (policies,)
    if not isinstance(policies, (list, tuple)) or not all(isinstance(p, str) for p in policies):
        raise SuiteError(f"{where}: `policies` is a list of policy ids")
    try:
        direction = Direction(raw.get("direction", "input"))
    except ValueError as exc:
        raise SuiteError(f"{where}: `direction` is input or output") from exc
    return Case(
        text=text, expect=expect, direction=direction, policies=tuple(policies), exact=bool(raw.get("exact", False)),
        context=str(raw.get("context") or ""), name=str(raw.get("name") or ""),
        model=raw.get("model"), key_id=raw.get("key_id"),
    )


def load_suite(path: Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{path}: {exc.strerror or exc}") from exc
    if path.suffix in (".jsonl", ".ndjson"):
        cases = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SuiteError(f"{path}:{n}: not JSON: {exc.msg}") from exc
                cases.append(_case(raw, f"{path}:{n}"))
        suite = Suite(cases)
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SuiteError(f"{path}: not valid YAML: {exc}") from exc
        if isinstance(doc, list):
            doc = {"cases": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
            raise SuiteError(f"{path}: expected a list of cases or a mapping with `cases:`")
        label = lambda i, c: f"{path}: case {i + 1}" + (f" ({c.get('name')})" if isinstance(c, dict) and c.get("name") else "")
        suite = Suite([_case(c, label(i, c)) for i, c in enumerate(doc["cases"])], guard=doc.get("guard"))
        if doc.get("policies"):
            suite.policies = (path.parent / str(doc["policies"])).resolve()
    if not suite.cases:
        raise SuiteError(f"{path}: the suite has no cases")
    return suite


def unknown_policies(suite: Suite, policy_set: PolicySet) -> list[str]:
    known = {p.id for p in policy_set.policies}
    return sorted({p for c in suite.cases for p in c.policies if p not in known})


async def run_suite(cases: list[Case], policy_set: PolicySet, guard: Guard | None, concurrency: int = 8) -> list[Result]:
    """Every case through the gateway's Moderator; results in suite order."""
    moderator = Moderator(guard, policy_set.settings.guard.timeout_s)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def run_case(case: Case) -> Result:
        turns = check_turns(case.direction, case.text, case.context)
        async with gate:
            start = time.perf_counter()
            d = await moderator.check(policy_set, case.direction, turns, [case.text], model=case.model, key_id=case.key_id)
            elapsed = (time.perf_counter() - start) * 1000
        decision = decision_of(d.action, d.error)  # as the block log reports it
        fired = [o.policy_id for o in d.outcomes if o.reason == "violated"]
        return Result(case, decision, fired, *_judge(case, decision, fired), latency_ms=elapsed,
                      reasoning=d.reasoning, error=d.error, fail_open=d.fail_open)

    try:
        return list(await asyncio.gather(*(run_case(c) for c in cases)))
    finally:
        await moderator.aclose()


def _judge(case: Case, decision: str, fired: list[str]) -> tuple[bool, str]:
    if decision != case.expect:
        return False, f"expected {case.expect}, got {decision}"
    missing = [p for p in case.policies if p not in fired]
    if missing:
        return False, f"{', '.join(missing)} did not fire"
    if case.exact:
        extra = [p for p in fired if p not in case.policies]
        if extra:
            return False, f"unexpected {', '.join(extra)}"
    return True, ""
