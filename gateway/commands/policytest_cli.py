"""The `rsafe policies test SUITE` command (registered on the `policies` sub-app by gateway/commands/cli.py).

A pass/fail table in a terminal, JSON lines when piped or with `--json` (one per case,
then a summary line). Exit 0 when every case passes, 1 when any fails, 2 when the suite,
the policies or the guard cannot be loaded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from gateway.commands.policytest import (
    Result,
    Suite,
    SuiteError,
    load_suite,
    run_suite,
    unknown_policies,
)
from guard.errors import GuardConfigError, GuardEngineError
from guard.policies import PolicySet


def policies_test_command(
    suite: Annotated[Path, typer.Argument(help="Suite of examples (YAML or JSONL)")],
    policies: Annotated[Path | None, typer.Option(
        "--policies", help="Policies file [default: the suite's `policies:`, else RSAFE_POLICIES / policies.yaml]")] = None,
    guard: Annotated[str | None, typer.Option(help="Guard backend (default: the policies file's)")] = None,
    guard_url: Annotated[str | None, typer.Option(help="Reasoning guard server URL")] = None,
    guard_model: Annotated[str | None, typer.Option(help="Reasoning guard model name")] = None,
    concurrency: Annotated[int, typer.Option(help="Cases checked at once")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines even in a terminal")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the guard's reasoning for failed cases")] = False,
) -> None:
    """Run a policies file against a suite of examples; exit 1 if any case fails (for CI)."""
    from gateway.service import make_guard
    from gateway.settings import Settings

    try:
        loaded: Suite = load_suite(suite)
        settings = Settings(**{k: v for k, v in {
            "guard": guard or loaded.guard, "guard_url": guard_url, "guard_model": guard_model,
        }.items() if v is not None})
        policies_path = policies or loaded.policies or settings.policies
        policy_set = PolicySet.load(policies_path)
        missing = unknown_policies(loaded, policy_set)
        if missing:
            raise SuiteError(f"{suite}: the suite names policies that {policies_path} does not define: {', '.join(missing)}")
    except (SuiteError, GuardEngineError, GuardConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        model_guard = make_guard(settings, policy_set)
    except Exception as exc:
        typer.echo(f"error: cannot start the guard: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from exc
    results = asyncio.run(run_suite(loaded.cases, policy_set, model_guard, concurrency))
    failed = sum(not r.passed for r in results)
    backend = model_guard.name if model_guard is not None else "patterns only"
    if json_out or not sys.stdout.isatty():
        for r in results:
            sys.stdout.write(orjson.dumps(r.as_json()).decode() + "\n")
        sys.stdout.write(orjson.dumps({"summary": {
            "cases": len(results), "passed": len(results) - failed, "failed": failed,
            "policies": str(policies_path), "policy_version": policy_set.version, "guard": backend,
        }}).decode() + "\n")
    else:
        _print(results, str(policies_path), policy_set.version, backend, verbose)
    raise typer.Exit(1 if failed else 0)


def _print(results: list[Result], path: str, version: str, backend: str, verbose: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(header_style="bold", title=f"{path} (version {version}) · guard: {backend}", title_justify="left")
    for col in ("", "#", "case", "dir", "expected", "got", "why", "ms"):
        table.add_column(col, justify="right" if col in ("#", "ms") else "left", overflow="fold")
    for i, r in enumerate(results, 1):
        c = r.case
        label = c.name or (c.text if len(c.text) <= 60 else c.text[:57] + "...")
        expected = c.expect + (f" {','.join(c.policies)}" if c.policies else "")
        got = r.decision + (f" {','.join(r.fired)}" if r.fired else "")
        table.add_row("[green]PASS[/]" if r.passed else "[bold red]FAIL[/]", str(i), label, c.direction.value,
                      expected, got, r.why or (f"fail-open: {','.join(r.fail_open)}" if r.fail_open else ""),
                      f"{r.latency_ms:.0f}")
    console.print(table)
    if verbose:
        for i, r in enumerate(results, 1):
            if not r.passed and (r.reasoning or r.error):
                console.print(f"[bold]#{i}[/] {r.error or ''} {r.reasoning or ''}")
    failed = sum(not r.passed for r in results)
    style = "bold red" if failed else "bold green"
    console.print(f"[{style}]{len(results) - failed} passed, {failed} failed[/] of {len(results)} cases")
