"""The gateway's commands of `rsafe`: serve the gateway, check a text, validate policies, logs.

`rsafe/cli.py` adds `eval` and `train` (guard/ and training/ contribute their own).

Every `serve` option is also an `RSAFE_*` environment variable (see gateway/settings.py);
a flag given on the command line wins.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gateway.blocklog.cli import logs_app
from gateway.commands.logsetup import configure_logging
from gateway.commands.policytest_cli import policies_test_command
from guard.errors import GuardEngineError
from guard.policies import Direction, PolicySet

app = typer.Typer(help="RSafe Gateway: an OpenAI-compatible guard gateway.", no_args_is_help=True, add_completion=False)
policies_app = typer.Typer(help="Work with policies.yaml.", no_args_is_help=True)
guard_app = typer.Typer(help="Run the guard on its own.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(logs_app, name="logs")
policies_app.command("test")(policies_test_command)
app.add_typer(guard_app, name="guard")

EXIT_BLOCKED = 3


def _settings(**overrides: object):
    from gateway.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# The options `serve` and `guard serve` share: each is also an RSAFE_* variable (Settings).
Host = Annotated[Optional[str], typer.Option(help="Bind address [RSAFE_HOST, default 127.0.0.1]")]
Port = Annotated[Optional[int], typer.Option(help="Port [RSAFE_PORT, default 8080]")]
PoliciesFile = Annotated[Optional[Path], typer.Option(help="Policies file [RSAFE_POLICIES]")]
BlockLogPath = Annotated[Optional[Path], typer.Option(help="Block log path, or - for JSON lines on stdout [RSAFE_BLOCK_LOG]")]
GuardName = Annotated[Optional[str], typer.Option(help="Guard backend override [RSAFE_GUARD]")]
GuardUrl = Annotated[Optional[str], typer.Option(help="Reasoning guard server URL [RSAFE_GUARD_URL]")]
GuardModel = Annotated[Optional[str], typer.Option(help="Reasoning guard model name [RSAFE_GUARD_MODEL]")]
LogLevel = Annotated[Optional[str], typer.Option(help="debug|info|warning|error [RSAFE_LOG_LEVEL]")]
Workers = Annotated[Optional[int], typer.Option(
    help="Processes sharing the port, for machines with more cores [RSAFE_WORKERS, default 1]")]


@app.command()
def serve(
    host: Host = None, port: Port = None, policies: PoliciesFile = None,
    upstream: Annotated[Optional[str], typer.Option(help="Default upstream base URL [RSAFE_UPSTREAM]")] = None,
    block_log: BlockLogPath = None, guard: GuardName = None, guard_url: GuardUrl = None, guard_model: GuardModel = None,
    log_level: LogLevel = None, workers: Workers = None,
) -> None:
    """Serve the gateway."""
    _serve(host=host, port=port, policies=policies, upstream=upstream, block_log=block_log, guard=guard,
           guard_url=guard_url, guard_model=guard_model, log_level=log_level, workers=workers)


@guard_app.command("serve")
def guard_serve(
    host: Host = None, port: Port = None, policies: PoliciesFile = None, guard: GuardName = None,
    guard_url: GuardUrl = None, guard_model: GuardModel = None, block_log: BlockLogPath = None,
    log_level: LogLevel = None, workers: Workers = None,
) -> None:
    """Serve only the guard, as an OpenAI-compatible POST /v1/moderations service."""
    _serve(host=host, port=port, policies=policies, guard=guard, guard_url=guard_url, guard_model=guard_model,
           block_log=block_log, log_level=log_level, guard_only=True, workers=workers)


def _serve(**overrides: object) -> None:
    import uvicorn
    from pydantic import ValidationError

    from gateway.app import create_app

    try:
        settings = _settings(**overrides)
        PolicySet.load(settings.policies)  # fail fast with the file:line message
    except (GuardEngineError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    from gateway.commands.workers import configure_threads, run_workers

    if settings.workers > 1:
        run_workers(settings, overrides)  # each worker configures its own threads
        return
    try:
        configure_threads(settings)  # torch's threads are process-wide: set here, not by the guard
    except GuardEngineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
        access_log=False, timeout_graceful_shutdown=5,
    )


@app.command()
def check(
    text: Annotated[str, typer.Argument(help="The text to moderate ('-' reads standard input)")],
    role: Annotated[Direction, typer.Option(help="input (a user message) or output (a model reply)")] = Direction.INPUT,
    policies: Annotated[Path, typer.Option(help="Policies file (not with --url: the gateway's own apply)")] = Path("policies.yaml"),
    guard: Annotated[Optional[str], typer.Option(help="Guard backend (default: the file's)")] = None,
    guard_url: Annotated[Optional[str], typer.Option(help="Reasoning guard server URL")] = None,
    guard_model: Annotated[Optional[str], typer.Option(help="Reasoning guard model name")] = None,
    context: Annotated[str, typer.Option(help="For --role output: the user message it answers")] = "",
    url: Annotated[Optional[str], typer.Option(
        help="Ask a running gateway (its POST /v1/moderations) instead of loading a guard here: "
             "milliseconds instead of seconds")] = None,
    api_key: Annotated[Optional[str], typer.Option(
        help="Gateway API key for --url, when the gateway requires one", envvar="RSAFE_API_KEY")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the gateway (--url)")] = 30.0,
) -> None:
    """Moderate one text; prints the decision as JSON. Exit 0 when allowed, 3 when blocked, 2 on errors."""
    if text == "-":
        text = sys.stdin.read()
    if url is not None:
        if guard or guard_url or guard_model:
            typer.echo("error: --guard, --guard-url and --guard-model do not apply with --url (the gateway's guard "
                       "judges)", err=True)
            raise typer.Exit(2)
        from gateway.commands.check_remote import RemoteCheckError, check_remote

        try:
            decision = check_remote(url, role, text, context, api_key=api_key, timeout_s=timeout)
        except RemoteCheckError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    else:
        try:
            settings = _settings(policies=policies, guard=guard, guard_url=guard_url, guard_model=guard_model)
            decision = asyncio.run(_check_once(settings, role, text, context))
        except GuardEngineError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(json.dumps(decision, indent=2))
    raise typer.Exit(EXIT_BLOCKED if decision["decision"] == "block" else 0)


async def _check_once(settings, role: Direction, text: str, context: str) -> dict:
    from gateway.commands.checkreport import check_turns, report
    from gateway.pipeline import Moderator
    from gateway.service import make_guard

    policy_set = PolicySet.load(settings.policies)
    moderator = Moderator(make_guard(settings, policy_set), policy_set.settings.guard.timeout_s)
    try:
        d = await moderator.check(policy_set, role, check_turns(role, text, context), [text])
    finally:
        await moderator.aclose()
    return report(d, policy_set.version)


@policies_app.command("validate")
def policies_validate(path: Annotated[Path, typer.Argument(help="Policies file")] = Path("policies.yaml")) -> None:
    """Validate a policies file; exit 1 with file:line: field messages when it is invalid."""
    try:
        ps = PolicySet.load(path)
    except GuardEngineError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    counts = {d.value: len(ps.active(d)) for d in Direction}
    typer.echo(
        f"{path}: OK - {len(ps.policies)} policies (version {ps.version}); "
        f"active on input: {counts['input']}, on output: {counts['output']}; guard: {ps.settings.guard.backend}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
