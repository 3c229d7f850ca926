"""One pass over one block-log file, for `rsafe logs stats` (see gateway/blocklog/stats.py).

A million lines must be counted in seconds on a small machine, so no Python code runs per
line. The file is read 8 MiB at a time; msgspec decodes each chunk's lines in one call
(`decode_lines`) into a struct holding only the fields that are counted (the others -
checked, reasoning, content... - are skipped, not built); then `map`/`zip` with
`attrgetter` feed `Counter` (all C): (decision, fail-open, bucket) jointly, the rest as
marginal counts, unfolded into the per-decision, per-policy and per-bucket counts once per file; latencies go into numpy
arrays per guard backend. The structs are not tracked by the cyclic garbage collector
(`gc=False`: they hold only strings, numbers and tuples, so they cannot form cycles), which
halves the decoding time of a chunk. A chunk with a torn or foreign line is decoded line by line
(those lines are counted as unreadable). A filter's raw-byte test runs first.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from gateway.blocklog import schema
from gateway.blocklog.counts import Stats
from gateway.blocklog.reader import FAIL_OPEN, Filter

_CHUNK = 8 * 1024 * 1024
_DECISION = attrgetter("decision")
_FAIL_OPEN = attrgetter("fail_open")
_DIRECTION = attrgetter("direction")
_ERROR = attrgetter("error")
_CACHED = attrgetter("cached")
_TRUNCATED = attrgetter("truncated")
_GUARD = attrgetter("guard")
_LATENCY = attrgetter("latency_ms")
_TS = attrgetter("ts")
_OUTCOMES = attrgetter("outcomes")
_OUTCOME_KEY = attrgetter("policy", "action", "reason")


# What stats count (every other field is skipped by the decoder, not built); tuples, not lists,
# so that the fields hash as parts of a key.
_COUNTED = ("ts", "decision", "direction", "fail_open", "error", "cached", "truncated", "guard", "latency_ms", "outcomes")
_Line = schema.view("_Line", _COUNTED)
_Full = schema.view("_Full", (*_COUNTED, "policies", "model", "key_id", "request_id"))  # what filters read as well


_DECODER = msgspec.json.Decoder(_Line)
_FILTERED = msgspec.json.Decoder(_Full)


def _chunks(path: Path) -> Iterator[bytes]:
    """Whole lines, ~8 MiB at a time."""
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
        rest = b""
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]
        if rest.strip():
            yield rest + b"\n"


def _decode(decoder: msgspec.json.Decoder, chunk: bytes) -> tuple[list[Any], int]:
    """(records, unreadable lines). A chunk with a bad line is decoded line by line."""
    try:
        return decoder.decode_lines(chunk), 0
    except (msgspec.DecodeError, msgspec.ValidationError):
        out, bad = [], 0
        for line in chunk.split(b"\n"):
            if line.strip():
                try:
                    out.append(decoder.decode(line))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    bad += 1
        return out, bad


class _Tally:
    """Counts by key tuple; unfolded into a `Stats` once per file."""

    def __init__(self, cut: int) -> None:
        self._bucket = itemgetter(slice(0, cut))  # "2026-11-28T05" (hour) or "2026-11-28" (day)
        self.combo: Counter = Counter()  # (decision, fail_open, bucket) -> n
        self.directions: Counter = Counter()
        self.lines = self.errors = self.cached = self.truncated = 0
        self.outcomes: Counter = Counter()  # (policy, action, reason) -> n
        self.latency: dict[str, list[np.ndarray]] = {}
        self.first: str | None = None
        self.last: str | None = None
        self.unreadable = 0

    def span(self, records: list[_Line]) -> None:
        first, last = records[0].ts, records[-1].ts
        if self.first is None or first < self.first:
            self.first = first
        if self.last is None or last > self.last:
            self.last = last

    def count(self, records: list[_Line]) -> None:
        """Count a chunk's records with C-level iteration only (map/zip/Counter/numpy).
        Only (decision, fail_open, bucket) is counted jointly; the rest are marginals."""
        n = len(records)
        self.lines += n
        self.combo.update(zip(map(_DECISION, records), map(_FAIL_OPEN, records),
                              map(self._bucket, map(_TS, records))))
        self.directions.update(map(_DIRECTION, records))
        self.errors += n - list(map(_ERROR, records)).count(None)
        self.cached += list(map(_CACHED, records)).count(True)
        self.truncated += list(map(_TRUNCATED, records)).count(True)
        self.outcomes.update(map(_OUTCOME_KEY, chain.from_iterable(filter(None, map(_OUTCOMES, records)))))
        guards = np.array(list(map(_GUARD, records)), dtype=object)
        values = np.array(list(map(_LATENCY, records)), dtype=float)  # None -> nan
        for guard in set(guards.tolist()) - {None}:
            picked = values[(guards == guard) & ~np.isnan(values)]
            self.latency.setdefault(guard, []).append(picked)

    def into(self, s: Stats) -> Stats:
        s.first, s.last, s.unreadable = self.first, self.last, self.unreadable
        s.lines, s.guard_errors, s.cached, s.truncated = self.lines, self.errors, self.cached, self.truncated
        s.directions.update(self.directions)
        for (decision, fail_open, bucket), n in self.combo.items():
            decision = decision or "allow"
            if decision == "allow" and fail_open:
                decision = FAIL_OPEN
            s.decisions[decision] += n
            s.buckets[bucket][decision] += n
        for (policy, action, reason), n in self.outcomes.items():
            counter = s.policies[policy]
            counter[action] += n
            if reason == "guard_error":
                counter["guard_error"] += n
                if action == FAIL_OPEN:
                    s.fail_open += n
                else:
                    s.fail_closed += n
        for guard, parts in self.latency.items():
            s.latency[guard].frombytes(np.concatenate(parts).astype("d").tobytes())
        return s


def scan_file(path: Path, filt: Filter, by: str = "hour") -> Stats:
    tally = _Tally(13 if by == "hour" else 10)
    check = not filt.empty
    exact = check and filt.decided_by_bytes
    for chunk in _chunks(path):
        if check:  # the raw-byte test first, then (unless it is exact) the filter on the records
            chunk = b"\n".join(line for line in chunk.split(b"\n") if filt.maybe(line)) + b"\n"
            if exact:
                records, bad = _decode(_DECODER, chunk)
            else:
                records, bad = _decode(_FILTERED, chunk)
                records = [r for r in records if filt.match(r)]
        else:
            records, bad = _decode(_DECODER, chunk)
        tally.unreadable += bad
        if records:
            tally.span(records)
            tally.count(records)
    return tally.into(Stats(by=by))
