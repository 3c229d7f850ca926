"""The block-log reader: rotated and gzip files in order, backwards reading, filters, follow."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

import orjson
import pytest

from gateway.blocklog import reader as logread
from gateway.blocklog.reader import Filter
from gateway.blocklog.writer import BlockLog
from gateway.pipeline import Decision, PolicyOutcome
from guard.policies import Direction
from tests.fakes.blocklogs import read_lines, write_log


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "blocks.jsonl"
    files = write_log(path, 3000, files=4, gzip_rotated=2, seed=1)
    return path, files, read_lines(files)


def test_files_oldest_first_gzip_included(log, tmp_path):
    path, files, _ = log
    assert [f.name for f in files] == ["blocks.jsonl.3.gz", "blocks.jsonl.2.gz", "blocks.jsonl.1", "blocks.jsonl"]
    (tmp_path / "other.jsonl").write_text("{}\n")  # a different log in the same folder is not ours
    assert logread.log_files(path) == files


def test_forward_and_backward_read_every_line_in_order(log):
    path, _, lines = log
    forward = list(logread.iter_oldest(path))
    assert [r["request_id"] for r in forward] == [r["request_id"] for r in lines]
    backward = list(logread.iter_newest(path))
    assert [r["request_id"] for r in backward] == [r["request_id"] for r in reversed(lines)]


def test_backward_reader_handles_blocks_and_long_lines(tmp_path):
    path = tmp_path / "b.jsonl"
    records = [{"ts": f"2026-01-01T00:00:{i % 60:02d}.000000Z", "i": i, "pad": "x" * (i * 997 % 150_000)} for i in range(60)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    assert [r["i"] for r in logread.iter_newest(path)] == list(range(59, -1, -1))


@pytest.mark.parametrize("field,key,values", [
    ("policies", "policies", ("S9",)),
    ("decisions", "decision", ("error",)),
    ("directions", "direction", ("output",)),
    ("models", "model", ("llama-3-8b", "qwen2.5-7b")),
    ("key_ids", "key_id", ("team-a",)),
])
def test_each_filter_selects_exactly_the_matching_records(log, field, key, values):
    path, _, lines = log
    got = [r["request_id"] for r in logread.iter_oldest(path, Filter(**{field: values}))]
    if key == "policies":
        want = [r["request_id"] for r in lines if set(values) & set(r["policies"])]
    else:
        want = [r["request_id"] for r in lines if r[key] in values]
    assert got == want and 0 < len(got) < len(lines)


def test_fail_open_is_its_own_decision(log):
    path, _, lines = log
    got = list(logread.iter_oldest(path, Filter(decisions=("fail_open",))))
    assert got and all(r["fail_open"] and logread.kind(r) == "fail_open" for r in got)
    assert len(got) == sum(1 for r in lines if r["fail_open"])
    assert not any(r["fail_open"] for r in logread.iter_oldest(path, Filter(decisions=("block",))))


def test_time_range_and_newest_first_stops_early(log):
    path, _, lines = log
    since, until = lines[1000]["ts"], lines[1500]["ts"]
    filt = Filter(since=since, until=until)
    assert [r["ts"] for r in logread.iter_oldest(path, filt)] == [r["ts"] for r in lines[1000:1500]]
    newest = list(logread.iter_newest(path, Filter(since=lines[-10]["ts"])))
    assert len(newest) == 10


def test_combined_filters_and_recent(log):
    path, _, lines = log
    filt = Filter(policies=("S1",), decisions=("block",), directions=("input",))
    want = [r for r in lines if "S1" in r["policies"] and r["decision"] == "block" and r["direction"] == "input"]
    got = logread.recent(path, filt, 7)
    assert [r["request_id"] for r in got] == [r["request_id"] for r in want[-7:]]


def test_find_request_across_rotated_files(log):
    path, _, lines = log
    target = lines[100]["request_id"]  # in the oldest, gzip-compressed file
    (found,) = logread.find_request(path, target)
    assert found == lines[100]
    assert logread.find_request(path, "req_nope") == []


def test_parse_time_durations_and_iso():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    assert logread.parse_time("1h", now) == "2026-11-28T11:00:00.000000Z"
    assert logread.parse_time("2d", now) == "2026-11-26T12:00:00.000000Z"
    assert logread.parse_time("2026-11-28T05:00", now) == "2026-11-28T05:00:00.000000Z"
    assert logread.parse_time("2026-11-28T07:00+02:00", now) == "2026-11-28T05:00:00.000000Z"
    with pytest.raises(ValueError):
        logread.parse_time("yesterday-ish", now)


def test_torn_and_foreign_lines_are_skipped(tmp_path):
    path = tmp_path / "blocks.jsonl"
    path.write_text('{"ts":"2026-01-01T00:00:00.000000Z","decision":"block"}\n{"ts":"2026-01-0\nnot json\n[1,2]\n')
    assert [r["decision"] for r in logread.iter_oldest(path)] == ["block"]
    assert [r["decision"] for r in logread.iter_newest(path)] == ["block"]


def _decision(policy: str) -> Decision:
    return Decision(Direction.INPUT, "block", [PolicyOutcome(policy, "block", "violated", 0.9)], [policy],
                    backend="scripted", reasoning=f"because {policy}")


def test_reads_what_the_real_block_log_writes_across_rotation(tmp_path):
    """BlockLog (structlog + RotatingFileHandler) -> reader, with a rotation every few lines."""
    path = tmp_path / "blocks.jsonl"
    blocklog = BlockLog(path, max_bytes=1500, backups=50)
    for i in range(40):
        blocklog.record(_decision("S1" if i % 2 else "S2"), request_id=f"req_{i}", route="chat_completions",
                        model="m", key_id="k", content=f"text {i}", log_content=False, policy_version="v1")
    blocklog.close()
    assert len(logread.log_files(path)) > 5
    records = list(logread.iter_oldest(path))
    assert [r["request_id"] for r in records] == [f"req_{i}" for i in range(40)]
    assert logread.find_request(path, "req_7")[0]["reasoning"] == "because S1"
    assert [r["request_id"] for r in logread.recent(path, Filter(policies=("S2",)), 3)] == ["req_34", "req_36", "req_38"]


def test_follow_sees_new_lines_and_survives_rotation(tmp_path):
    path = tmp_path / "blocks.jsonl"
    path.write_text('{"ts":"2026-01-01T00:00:00.000000Z","request_id":"old","decision":"block"}\n')
    seen: list[str] = []
    done = threading.Event()

    def ticks():
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            yield

    def reader():
        for r in logread.follow(path, Filter(decisions=("block",)), poll_s=0.02, stop=ticks()):
            seen.append(r["request_id"])
            if len(seen) == 3:
                done.set()

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    with open(path, "a") as fh:
        fh.write('{"ts":"2026-01-01T00:00:01.000000Z","request_id":"a","decision":"block"}\n')
        fh.write('{"ts":"2026-01-01T00:00:02.000000Z","request_id":"skip","decision":"flag"}\n')
        fh.write('{"ts":"2026-01-01T00:00:03.000000Z","request_id":"b",')  # a line still being written
    time.sleep(0.2)
    with open(path, "a") as fh:
        fh.write('"decision":"block"}\n')
    time.sleep(0.2)
    os.rename(path, path.with_name("blocks.jsonl.1"))  # rotation
    path.write_text('{"ts":"2026-01-01T00:00:04.000000Z","request_id":"c","decision":"block"}\n')
    t.join(timeout=15)
    assert seen == ["a", "b", "c"]


def test_budget_stops_a_newest_first_scan_and_says_where(log):
    path, _, lines = log
    budget = logread.Budget(0.0)
    got = list(logread.iter_newest(path, Filter(policies=("NO_SUCH_POLICY",)), budget))
    assert got == [] and budget.reached_ts
    assert lines[0]["ts"] < budget.reached_ts <= lines[-1]["ts"]
    # continuing from there (the web view's "older" link) skips what was already searched
    rest = list(logread.iter_newest(path, Filter(until=budget.reached_ts)))
    assert rest and all(r["ts"] < budget.reached_ts for r in rest)
    assert len(rest) == sum(1 for r in lines if r["ts"] < budget.reached_ts)
