"""One record for the block log (gateway/blocklog/schema.py): the writer writes it, the readers and the fakes use it."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import msgspec
import orjson
import pytest

from gateway.blocklog import schema
from gateway.blocklog.writer import BlockLog
from gateway.pipeline import Decision, PolicyOutcome
from guard.policies import Direction
from tests.fakes.blocklogs import record


def written(tmp_path, write) -> list[dict]:
    log = BlockLog(tmp_path / "blocks.jsonl", 1 << 20, 1)
    try:
        write(log)
        log.flush()
    finally:
        log.close()
    return [orjson.loads(x) for x in (tmp_path / "blocks.jsonl").read_bytes().splitlines()]


def test_the_writer_writes_the_schemas_fields_in_order(tmp_path):
    decision = Decision(Direction.INPUT, action="block", outcomes=[PolicyOutcome("S1", "block", "violated", 0.9)],
                        checked=["S1", "S2"], backend="embedded", decided_by="embedded", reasoning="why",
                        latency_ms=1.23456)
    (line, cut) = written(tmp_path, lambda log: (
        log.record(decision, request_id="req_1", route="chat_completions", model="m", key_id="k", content="hi",
                   log_content=True, policy_version="v1"),
        log.stream_cut(request_id="req_2", route="chat_completions", model="m", key_id=None, error="cut",
                       policy_version="v1"),
    ))
    assert list(line) == list(schema.FIELDS)  # reasoning and content set: every field, in order
    assert line["outcomes"] == [{"policy": "S1", "action": "block", "reason": "violated", "score": 0.9}]
    assert line["decision"] == "block" and line["event"] == "decision" and line["latency_ms"] == 1.235
    leave_out = {*schema.ONLY_WHEN_SET, *schema.NOT_ON_STREAM_CUTS}
    assert list(cut) == [f for f in schema.FIELDS if f not in leave_out]
    assert cut["event"] == "upstream_stream_cut" and cut["decided_by"] == "upstream" and cut["policies"] == []


def test_the_fake_logs_lines_are_the_writers():
    line = record(0, random.Random(0), datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert [f for f in line if f not in schema.ONLY_WHEN_SET] == [f for f in schema.FIELDS if f not in schema.ONLY_WHEN_SET]


def test_a_view_builds_only_its_fields_and_names_only_schema_fields():
    view = schema.view("V", ("ts", "decision", "outcomes"), outcome=("policy",))
    r = msgspec.json.decode(orjson.dumps(record(0, random.Random(0), datetime(2026, 1, 1, tzinfo=timezone.utc))), type=view)
    assert r.get("decision") and r.get("model") is None and r.outcomes[0].policy
    with pytest.raises(ValueError, match="not block-log fields"):
        schema.view("W", ("ts", "decison"))
