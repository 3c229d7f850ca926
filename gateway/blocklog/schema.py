"""The block log's record: one place for its field names, their order and their types.

One JSON line per decision that is not a plain allow (`writer.BlockLog.record`), or per upstream
stream cut (`writer.BlockLog.stream_cut`), in the field order of `Record`. `event` and `ts` come
last: the writer's logger adds them (`event` is the log call's message, `ts` its time stamp,
ISO 8601 in UTC). `reasoning` and `content` appear only when set; every other field is always
there, `null` when unknown.

Who uses it: the writer builds a `Record` and writes `fields(record)`; the fast readers decode a
`view` that builds only the fields they read (`scan.py`, `index.py`); tests/fakes/blocklogs.py
writes synthetic logs with `line(record)`, so the tests read exactly what the gateway writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec


class Outcome(msgspec.Struct, gc=False):
    """What happened for one policy."""

    policy: str | None = None
    action: str | None = None  # block | rewrite | flag | fail_open
    reason: str | None = None  # violated | guard_error
    score: float | None = None


class Record(msgspec.Struct, gc=False, kw_only=True):
    """One block-log line. Arrays are typed as tuples so that decoded values hash (counting keys);
    the writer may hand in lists."""

    request_id: str | None = None
    route: str | None = None  # chat_completions | responses | moderations | ...
    key_id: str | None = None  # the gateway key's id, never the key
    model: str | None = None
    direction: str | None = None  # input | output
    decision: str | None = None  # flag | rewrite | block | error | allow (with outcomes or an error)
    action: str | None = None  # the strictest action taken
    policies: tuple[str, ...] = ()  # the policies of `outcomes`, in order
    outcomes: tuple[Outcome, ...] = ()
    checked: tuple[str, ...] = ()  # every policy the guards were asked about
    fail_open: tuple[str, ...] = ()  # policies whose guard failed and that let the request through
    guard: str | None = None  # the guard backend
    decided_by: str | None = None  # the guard (or `upstream`) that decided
    latency_ms: float | None = None
    error: str | None = None  # the guard's (or the stream's) failure
    truncated: bool = False
    cached: bool = False
    policy_version: str | None = None
    content_sha256: str | None = None  # content_digest(content); absent on a stream cut
    content_len: int | None = None
    reasoning: str | None = None  # the reasoning guard's, cut to MAX_REASONING_CHARS
    content: str | None = None  # only with `log_content` on
    event: str = "decision"  # decision | upstream_stream_cut
    ts: str = ""


WRITTEN_LAST = ("event", "ts")  # added by the writer's logger
ONLY_WHEN_SET = ("reasoning", "content")
NOT_ON_STREAM_CUTS = ("content_sha256", "content_len")
FIELDS = Record.__struct_fields__


def decision_of(action: str, error: str | None) -> str:
    """The line's `decision`: `error` when a guard failed and the request did not simply go through."""
    return "error" if error and action != "allow" else action


def fields(record: Record, *, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """The fields the writer logs, in order: all but `event`/`ts`, `reasoning`/`content` only when set."""
    out = msgspec.structs.asdict(record)  # shallow: values go to the writer's JSON encoder as they are
    out["outcomes"] = [msgspec.structs.asdict(o) for o in record.outcomes]
    for name in (*WRITTEN_LAST, *leave_out):
        del out[name]
    for name in ONLY_WHEN_SET:
        if out[name] is None:
            del out[name]
    return out


def line(record: Record) -> dict[str, Any]:
    """The whole line as the writer writes it (for synthetic logs)."""
    return fields(record) | {"event": record.event, "ts": record.ts}


def _get(self: Any, name: str, default: Any = None) -> Any:  # the dict interface Filter.match reads
    return getattr(self, name, default)


def view(name: str, names: Sequence[str], outcome: Sequence[str] = ("policy", "action", "reason")) -> type:
    """A struct that decodes only the fields `names` of a line (and `outcome` of each outcome);
    the decoder skips every other field without building it. `ts` is required (a line without one
    is unreadable), every other field may be missing or null. It has `.get` like a dict."""
    types = {f.name: f.type for f in msgspec.structs.fields(Record)}
    outcome_types = {f.name: f.type for f in msgspec.structs.fields(Outcome)}
    unknown = set(names) - set(types) | set(outcome) - set(outcome_types)
    if unknown:
        raise ValueError(f"not block-log fields: {sorted(unknown)}")
    part = msgspec.defstruct(f"{name}Outcome", [(n, outcome_types[n], None) for n in outcome], gc=False)
    spec: list[tuple] = [("ts", str)] if "ts" in names else []
    for n in names:
        if n != "ts":
            spec.append((n, (tuple[part, ...] if n == "outcomes" else types[n]) | None, None))
    return msgspec.defstruct(name, spec, gc=False, namespace={"get": _get}, module=__name__)
