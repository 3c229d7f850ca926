"""`rsafe logs tail/show/stats/prune` as a user runs them (Typer's runner; output is piped, so JSON lines)."""

from __future__ import annotations

import gzip
import os
import time

import orjson
import pytest
import typer
from typer.testing import CliRunner

from gateway.blocklog import cli as logs_cli
from gateway.blocklog.cli import logs_app
from tests.fakes.blocklogs import write_log

app = typer.Typer()
app.add_typer(logs_app, name="logs")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # stats' cache of rotated files


def rsafe(*args: str, env: dict | None = None):
    return runner.invoke(app, ["logs", *args], env=env, catch_exceptions=False)


def jsonl(output: str) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "blocks.jsonl"
    files = write_log(path, 2000, files=3, gzip_rotated=1, seed=5)
    lines = []
    for f in files:
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        lines += [orjson.loads(x) for x in data.splitlines() if x]
    return path, lines


def test_tail_prints_the_last_records_as_json_lines(log):
    path, lines = log
    r = rsafe("tail", "--log", str(path), "-n", "5")
    assert r.exit_code == 0
    assert jsonl(r.stdout) == lines[-5:]


def test_tail_filters(log):
    path, lines = log
    r = rsafe("tail", "--log", str(path), "-n", "1000", "--policy", "S11", "--decision", "block",
              "--direction", "output", "--model", "gpt-4o-mini", "--key", "team-b")
    want = [x for x in lines if "S11" in x["policies"] and x["decision"] == "block" and x["direction"] == "output"
            and x["model"] == "gpt-4o-mini" and x["key_id"] == "team-b"]
    assert jsonl(r.stdout) == want[-1000:] and want


def test_tail_time_range_and_request(log):
    path, lines = log
    r = rsafe("tail", "--log", str(path), "-n", "100000", "--since", lines[1990]["ts"], "--until", lines[1995]["ts"])
    assert [x["request_id"] for x in jsonl(r.stdout)] == [x["request_id"] for x in lines[1990:1995]]
    r = rsafe("tail", "--log", str(path), "--request", lines[3]["request_id"])  # in the .gz file
    assert jsonl(r.stdout) == [lines[3]]
    r = rsafe("tail", "--log", str(path), "--since", "not-a-time")
    assert r.exit_code == 2 and "not a time" in r.output


def test_log_defaults_to_the_configured_block_log(log):
    path, lines = log
    r = rsafe("tail", "-n", "2", env={"RSAFE_BLOCK_LOG": str(path)})
    assert jsonl(r.stdout) == lines[-2:]


def test_show_one_request_with_reasoning(log):
    path, lines = log
    target = next(x for x in lines if x.get("reasoning"))
    r = rsafe("show", target["request_id"], "--log", str(path))
    assert r.exit_code == 0 and jsonl(r.stdout) == [target]
    r = rsafe("show", "req_missing", "--log", str(path))
    assert r.exit_code == 1 and "no record of req_missing" in r.output


def test_show_and_tail_render_tables_in_a_terminal(log, monkeypatch):
    path, lines = log
    monkeypatch.setattr(logs_cli, "_want_json", lambda flag: flag)
    monkeypatch.setenv("COLUMNS", "200")
    target = next(x for x in lines if x.get("reasoning"))
    r = rsafe("show", target["request_id"], "--log", str(path))
    assert "guard reasoning" in r.stdout and target["reasoning"][:40] in r.stdout.replace("\n", " ").replace("│", "")
    r = rsafe("tail", "--log", str(path), "-n", "3")
    assert lines[-1]["request_id"] in r.stdout and "decision" in r.stdout
    r = rsafe("stats", "--log", str(path))
    assert "Decisions" in r.stdout and "Guard latency" in r.stdout and "fail-open" in r.stdout


def test_stats_json(log):
    path, lines = log
    r = rsafe("stats", "--log", str(path), "--by", "day", "--json")
    s = orjson.loads(r.stdout)
    assert s["lines"] == len(lines) and s["by"] == "day"
    assert s["decisions"]["block"]["count"] == sum(1 for x in lines if x["decision"] == "block")
    assert set(s["latency_ms"]["all"]) >= {"p50", "p90", "p95", "p99", "max"}
    r = rsafe("stats", "--log", str(path), "--policy", "S2")
    assert orjson.loads(r.stdout)["lines"] == sum(1 for x in lines if "S2" in x["policies"])
    assert rsafe("stats", "--log", str(path), "--by", "week").exit_code == 2


def test_prune_keeps_the_live_file(tmp_path, monkeypatch):
    path = tmp_path / "blocks.jsonl"
    path.write_text("{}\n")
    old, fresh = tmp_path / "blocks.jsonl.2.gz", tmp_path / "blocks.jsonl.1"
    old.write_bytes(gzip.compress(b"{}\n"))
    fresh.write_text("{}\n")
    ten_days = time.time() - 10 * 86400
    os.utime(old, (ten_days, ten_days))
    os.utime(path, (ten_days, ten_days))  # the live file is never pruned, however old
    r = rsafe("prune", "--log", str(path), "--days", "7")
    assert r.exit_code == 0 and "blocks.jsonl.2.gz" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.jsonl", "blocks.jsonl.1"]
    monkeypatch.delenv("RSAFE_BLOCK_LOG_RETENTION_DAYS", raising=False)
    r = rsafe("prune", "--log", str(path))
    assert r.exit_code == 2 and "no retention period" in r.output


def test_followed_records_print_one_line_each_with_markup_escaped():
    from rich.console import Console

    line = logs_cli._line({"ts": "2026-11-28T05:00:00.000000Z", "request_id": "req_1", "direction": "input",
                           "decision": "block", "policies": ["S1"], "model": "[bold]evil[/bold]", "latency_ms": 3.25})
    console = Console(record=True, width=200, color_system=None)
    console.print(line, soft_wrap=True)
    out = console.export_text()
    assert out.count("\n") == 1 and "[bold]evil[/bold]" in out and "block" in out and "3.2 ms" in out
