"""`rsafe logs`: tail, show and stats over the block log.

In a terminal the output is rich tables; piped (or with `--json`) it is JSON lines, one
record per line exactly as logged, so `rsafe logs tail --decision block | jq` just works.
Every subcommand takes `--log PATH` (default: the configured block log, `RSAFE_BLOCK_LOG`)
and reads the rotated and gzip-compressed files next to it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from gateway.blocklog import reader as logread
from gateway.blocklog.reader import Filter

logs_app = typer.Typer(help="Read the block log: what was blocked, under which policy, and why.",
                       no_args_is_help=True)

LogOpt = Annotated[Path | None, typer.Option("--log", help="Block log file [default: RSAFE_BLOCK_LOG or logs/blocks.jsonl]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON lines even in a terminal")]
PolicyOpt = Annotated[list[str] | None, typer.Option("--policy", "-p", help="Policy id (repeatable)")]
DecisionOpt = Annotated[list[str] | None, typer.Option(
    "--decision", "-d", help="block|rewrite|flag|error|fail_open|allow (repeatable)")]
DirectionOpt = Annotated[list[str] | None, typer.Option("--direction", help="input|output")]
ModelOpt = Annotated[list[str] | None, typer.Option("--model", "-m", help="Model name (repeatable)")]
KeyOpt = Annotated[list[str] | None, typer.Option("--key", "-k", help="Gateway key id (repeatable)")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="30m, 1h, 7d or an ISO time")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="30m, 1h, 7d or an ISO time")]
RequestOpt = Annotated[str | None, typer.Option("--request", "-r", help="Request id")]

_COLORS = {"block": "bold red", "error": "bold magenta", "rewrite": "yellow", "flag": "cyan",
           "fail_open": "bold yellow", "allow": "green"}


def _log_path(log: Path | None) -> Path:
    if log is not None:
        return log
    from gateway.settings import Settings

    return Settings().block_log


def _time(value: str | None, option: str) -> str | None:
    try:
        return logread.parse_time(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def _filter(policy, decision, direction, model, key, since, until, request) -> Filter:
    return Filter(
        policies=tuple(policy or ()), decisions=tuple(decision or ()), directions=tuple(direction or ()),
        models=tuple(model or ()), key_ids=tuple(key or ()), request_id=request,
        since=_time(since, "--since"), until=_time(until, "--until"),
    )


def _want_json(flag: bool) -> bool:
    return flag or not sys.stdout.isatty()


def _emit_json(record: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(record).decode() + "\n")
    sys.stdout.flush()


def _console():
    from rich.console import Console

    return Console(highlight=False)


# Table columns, left to right. A narrow terminal drops optional ones (lowest priority first) rather
# than cutting cells: a request id is never shortened, so it can be pasted into `rsafe logs show`.
COLUMNS = ("time (UTC)", "request", "dir", "decision", "policies", "model", "key", "guard", "ms")
ESSENTIAL = ("time (UTC)", "request", "decision")
BY_PRIORITY = ("policies", "dir", "model", "guard", "ms", "key")
GAP = 2  # rich's cell padding between two columns (box=None, pad_edge=False)


def _cells(r: dict[str, Any]) -> dict[str, str]:
    ms = r.get("latency_ms")
    return {
        "time (UTC)": (r.get("ts") or "")[:19].replace("T", " "), "request": r.get("request_id") or "",
        "dir": r.get("direction") or "", "decision": logread.kind(r), "policies": ", ".join(r.get("policies") or ()),
        "model": r.get("model") or "", "key": r.get("key_id") or "", "guard": r.get("decided_by") or r.get("guard") or "",
        "ms": f"{ms:.1f}" if isinstance(ms, (int, float)) else "",
    }


def _fit(rows: list[dict[str, str]], width: int) -> tuple[list[str], dict[str, int]] | None:
    """The columns that fit in `width` at full width (None when even the essential ones do not), and
    each column's width. Only `policies` may wrap (at its commas), down to its longest policy id."""
    natural = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in COLUMNS}
    narrowest = {**natural, "policies": max([len("policies"), *(len(p) for row in rows for p in row["policies"].split(", "))])}

    def need(cols) -> int:
        return sum(narrowest[c] for c in cols) + GAP * (len(cols) - 1)

    chosen = list(ESSENTIAL)
    if need(chosen) > width:
        return None
    for col in BY_PRIORITY:
        if need([*chosen, col]) <= width:
            chosen.append(col)
    return [c for c in COLUMNS if c in chosen], natural


def _table(records: list[dict[str, Any]], width: int = 10_000):
    """A table of `records` for a terminal `width` columns wide, or None when it cannot hold a whole
    request id (then each record goes on its own soft-wrapped line: see `_line`)."""
    from rich.markup import escape
    from rich.table import Table

    rows = [_cells(r) for r in records]
    fit = _fit(rows, width)
    if fit is None:
        return None
    cols, natural = fit
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in cols:
        wraps = col == "policies"
        table.add_column(col, no_wrap=not wraps, min_width=None if wraps else natural[col],
                         justify="right" if col == "ms" else "left")
    for row in rows:
        kind = row["decision"]
        table.add_row(*(f"[{_COLORS.get(kind, '')}]{kind}[/]" if c == "decision" else escape(row[c]) for c in cols))
    hidden = [c for c in COLUMNS if c not in cols]
    if hidden:
        table.caption = f"(narrow terminal: {', '.join(hidden)} hidden; --json shows all)"
        table.caption_justify = "left"
        table.caption_style = "dim"
    return table


def _print_records(records: list[dict[str, Any]]) -> None:
    console = _console()
    table = _table(records, console.width)
    if table is not None:
        console.print(table)
        return
    for r in records:  # too narrow for a table: one line per record, wrapped by the terminal, never cut
        console.print(_line(r), soft_wrap=True)


def _line(r: dict[str, Any]) -> str:
    """One followed record on one line (a table per record would repeat its header)."""
    from rich.markup import escape

    kind = logread.kind(r)
    ms = r.get("latency_ms")
    cells = [(r.get("ts") or "")[:19].replace("T", " "), r.get("request_id") or "", f"{r.get('direction') or '':6}",
             f"[{_COLORS.get(kind, '')}]{kind:9}[/]", ",".join(r.get("policies") or ()) or "-", r.get("model") or "-",
             r.get("key_id") or "-", r.get("decided_by") or r.get("guard") or "-",
             f"{ms:.1f} ms" if isinstance(ms, (int, float)) else ""]
    return "  ".join(c if c.startswith("[") and "[/]" in c else escape(c) for c in cells)


@logs_app.command("tail")
def tail(
    log: LogOpt = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many recent records")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records (Ctrl-C stops)")] = False,
    policy: PolicyOpt = None, decision: DecisionOpt = None, direction: DirectionOpt = None,
    model: ModelOpt = None, key: KeyOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    request: RequestOpt = None, json_out: JsonOpt = False,
) -> None:
    """The most recent decisions (newest last), optionally following the log."""
    path = _log_path(log)
    filt = _filter(policy, decision, direction, model, key, since, until, request)
    records = logread.recent(path, filt, lines) if lines > 0 else []
    as_json = _want_json(json_out)
    if as_json:
        for r in records:
            _emit_json(r)
    elif records:
        _print_records(records)
    elif not follow:
        _console().print(f"[dim]no matching records in {path}[/]")
    if not follow:
        return
    console = None if as_json else _console()
    try:
        for r in logread.follow(path, filt):
            if console is None:
                _emit_json(r)
            else:
                console.print(_line(r), soft_wrap=True)
    except KeyboardInterrupt:
        return


@logs_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The request id (x-request-id header, `req_...`)")],
    log: LogOpt = None, json_out: JsonOpt = False,
) -> None:
    """One request's decisions in full, the guard's reasoning included. Exit 1 if not found."""
    path = _log_path(log)
    records = logread.find_request(path, request_id)
    if not records:
        typer.echo(f"no record of {request_id} in {path} (allowed requests are logged only with log_allowed: true)", err=True)
        raise typer.Exit(1)
    if _want_json(json_out):
        for r in records:
            _emit_json(r)
        return
    from rich.panel import Panel
    from rich.table import Table

    console = _console()
    for r in records:
        kind = logread.kind(r)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for name in ("ts", "request_id", "route", "direction", "model", "key_id", "policy_version", "guard",
                     "decided_by", "latency_ms", "cached", "truncated", "error", "fail_open", "checked",
                     "content_sha256", "content_len"):
            value = r.get(name)
            if value not in (None, "", [], False):
                grid.add_row(name, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
        outcomes = Table(box=None, header_style="bold")
        for col in ("policy", "action", "reason", "score"):
            outcomes.add_column(col)
        for o in r.get("outcomes") or ():
            score = o.get("score")
            outcomes.add_row(str(o.get("policy")), str(o.get("action")), str(o.get("reason")),
                             "" if score is None else f"{score:.3f}")
        console.print(Panel(grid, title=f"[{_COLORS.get(kind, '')}]{kind}[/] · {r.get('direction')}", expand=False))
        if r.get("outcomes"):
            console.print(outcomes)
        if r.get("reasoning"):
            console.print(Panel(r["reasoning"], title="guard reasoning", expand=False))
        if r.get("content") is not None:
            console.print(Panel(r["content"], title="content (log_content is on)", expand=False))


@logs_app.command("stats")
def stats(
    log: LogOpt = None,
    by: Annotated[str, typer.Option("--by", help="Time buckets: hour or day")] = "hour",
    policy: PolicyOpt = None, decision: DecisionOpt = None, direction: DirectionOpt = None,
    model: ModelOpt = None, key: KeyOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    json_out: JsonOpt = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rescan rotated files instead of reusing their counts")] = False,
) -> None:
    """Counts and rates per policy, decision and hour/day; guard latency; failure modes."""
    from gateway.blocklog import stats as logstats
    from gateway.blocklog.cache import StatsCache

    if by not in ("hour", "day"):
        raise typer.BadParameter("--by is hour or day")
    path = _log_path(log)
    filt = _filter(policy, decision, direction, model, key, since, until, None)
    summary = logstats.compute(path, filt, by, cache=None if no_cache else StatsCache()).summary()
    if _want_json(json_out):
        sys.stdout.write(logstats.dumps(summary).decode() + "\n")
        return
    _print_stats(summary, path)


def _print_stats(s: dict[str, Any], path: Path) -> None:
    from rich.table import Table

    console = _console()
    if not s["lines"]:
        console.print(f"[dim]no matching records in {path}[/]")
        return
    console.print(f"[bold]{s['lines']:,}[/] decisions from {s['from']} to {s['to']} ({s['hours']:.1f} h)"
                  + (f", {s['unreadable']} unreadable lines" if s["unreadable"] else ""))
    t = Table(title="Decisions", title_justify="left", header_style="bold")
    for col in ("decision", "count", "share", "per hour"):
        t.add_column(col, justify="left" if col == "decision" else "right")
    for d, v in s["decisions"].items():
        t.add_row(f"[{_COLORS.get(d, '')}]{d}[/]", f"{v['count']:,}", f"{v['share']:.1%}", f"{v['per_hour']:.1f}")
    console.print(t)
    t = Table(title="Policies", title_justify="left", header_style="bold")
    for col in ("policy", "block", "rewrite", "flag", "fail-closed", "fail-open", "share", "per hour"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for p, v in s["policies"].items():
        closed = v.get("guard_error", 0) - v.get("fail_open", 0)
        t.add_row(p, *(f"{v.get(a, 0):,}" for a in ("block", "rewrite", "flag")), f"{closed:,}",
                  f"{v.get('fail_open', 0):,}", f"{v['share']:.1%}", f"{v['per_hour']:.1f}")
    console.print(t)
    fm = s["failure_mode"]
    console.print(f"Failure modes: [bold]{fm['fail_closed']:,}[/] fail-closed, [bold yellow]{fm['fail_open']:,}[/] "
                  f"fail-open activations; {fm['decisions_with_guard_error']:,} decisions with a guard error; "
                  f"{s['cached']:,} cached verdicts")
    t = Table(title="Guard latency (ms)", title_justify="left", header_style="bold")
    for col in ("guard", "count", "p50", "p90", "p95", "p99", "max"):
        t.add_column(col, justify="left" if col == "guard" else "right")
    for g, v in s["latency_ms"].items():
        if v.get("count"):
            t.add_row(g, f"{v['count']:,}", *(f"{v[k]:.1f}" for k in ("p50", "p90", "p95", "p99", "max")))
    console.print(t)
    t = Table(title=f"Per {s['by']}", title_justify="left", header_style="bold")
    kinds = [d for d in (*logread.DECISIONS, logread.FAIL_OPEN) if d in s["decisions"]]
    t.add_column(s["by"])
    for d in kinds:
        t.add_column(d, justify="right")
    buckets = list(s["buckets"].items())
    if len(buckets) > 48:
        console.print(f"[dim](last 48 of {len(buckets)} {s['by']}s; --json for all)[/]")
        buckets = buckets[-48:]
    for b, v in buckets:
        t.add_row(b.replace("T", " ") + (":00" if s["by"] == "hour" else ""), *(f"{v.get(d, 0):,}" for d in kinds))
    console.print(t)


@logs_app.command("prune")
def prune(
    log: LogOpt = None,
    days: Annotated[float | None, typer.Option(help="Delete rotated files older than this [default: RSAFE_BLOCK_LOG_RETENTION_DAYS]")] = None,
) -> None:
    """Delete rotated block-log files older than the retention period (the live file is kept)."""
    from gateway.blocklog.retention import prune_block_logs

    if days is None:
        from gateway.settings import Settings

        days = getattr(Settings(), "block_log_retention_days", None)
    if not days:
        typer.echo("no retention period: pass --days or set RSAFE_BLOCK_LOG_RETENTION_DAYS", err=True)
        raise typer.Exit(2)
    if not 0 < days < float("inf"):  # a negative count would put the cutoff in the future: delete everything
        raise typer.BadParameter(f"a positive number of days, not {days}", param_hint="--days")
    for removed in prune_block_logs(_log_path(log), days):
        typer.echo(f"removed {removed}")
