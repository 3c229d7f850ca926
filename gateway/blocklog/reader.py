"""Reading the block log: its rotated and gzip-compressed files, newest or oldest first, filtered.

The block log is written by `gateway/blocklog/writer.py` (one JSON object per line) and rotated
by size: `blocks.jsonl` is the newest file, `blocks.jsonl.1`, `.2`... are older ones, and an
operator's logrotate may have compressed some to `.gz`. Everything here treats that set
of files as one stream of records in time order.

Why it is fast on large logs:
- Filters are first tried on the raw bytes of a line (`Filter.maybe`): a policy id, request
  id, model or key id that does not occur in the line at all rules it out without parsing.
  Only candidates are parsed (orjson).
- Timestamps are ISO-8601 UTC strings of one fixed format, so time filters are string
  comparisons, and reading newest-first can stop at the first line older than `since`.
- `iter_newest` reads plain files backwards in blocks, so `tail`, the web view and `show`
  of a recent request touch only the end of a multi-gigabyte log.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

DECISIONS = ("allow", "flag", "rewrite", "block", "error")
FAIL_OPEN = "fail_open"  # a pseudo-decision: passed only because a guard failed and the policy fails open
_BLOCK = 1 << 16
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --- files -------------------------------------------------------------------------------
def log_files(path: Path) -> list[Path]:
    """The block log's files, oldest first; the live file (`path` itself) last.

    Rotated siblings are `path.N` and `path.N.gz` (RotatingFileHandler, logrotate), or any
    `path<suffix>` / `path<suffix>.gz` (logrotate's dateext). They are ordered by modification
    time (a rotated file's mtime is its last write), ties broken by the rotation number."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    rotated: list[tuple[float, int, Path]] = []
    if parent.is_dir():
        prefix = path.name
        for entry in os.scandir(parent):
            name = entry.name
            if name == prefix or not name.startswith(prefix) or not entry.is_file():
                continue
            suffix = name[len(prefix):].removesuffix(".gz").lstrip(".-_")
            number = int(suffix) if suffix.isdigit() else 0
            rotated.append((entry.stat().st_mtime, -number, Path(entry.path)))
    files = [p for _, _, p in sorted(rotated)]
    if path.is_file():
        files.append(path)
    return files


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _lines_forward(path: Path) -> Iterator[bytes]:
    with _open(path) as fh:
        for line in fh:
            if len(line) > 1:
                yield line


def _lines_backward(path: Path) -> Iterator[bytes]:
    """Lines of one file, last first. Plain files are read from the end in 64 KiB blocks;
    a gzip file cannot be read backwards, so it is decompressed whole (rotated files are bounded)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for line in reversed(lines):
            if line:
                yield line
        return
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        rest = b""
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]
            for line in reversed(parts[1:]):
                if line:
                    yield line
        if rest:
            yield rest


def parse(line: bytes) -> dict[str, Any] | None:
    """One record, or None for a line that is not a JSON object (a torn write, a foreign line)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


# --- time ----------------------------------------------------------------------------------
def parse_time(value: str | None, now: datetime | None = None) -> str | None:
    """`1h`, `30m`, `7d` (that long ago) or an ISO date/time -> the log's timestamp format.

    ValueError (with a message for the user) for anything else, a duration reaching before
    year 1 included (`99999999999h`) and a time that cannot be expressed in UTC."""
    if not value:
        return None
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(value)
    try:
        if m:
            moment = now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        else:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
    except OverflowError as exc:
        raise ValueError(f"out of range: {value[:40]!r} reaches before year 1 or past 9999") from exc
    except ValueError as exc:
        raise ValueError(f"not a time: {value[:40]!r} (use 30m, 1h, 7d or an ISO date like 2026-11-28T05:00)") from exc
    # isoformat, not strftime: strftime writes year 1 as "1", which would not sort as a timestamp
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def ts_to_epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# --- filters ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Filter:
    """What `rsafe logs`, the stats and the web view select. Empty fields select everything;
    several values in one field are alternatives (OR), fields combine with AND."""

    policies: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()  # allow|flag|rewrite|block|error|fail_open
    directions: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    key_ids: tuple[str, ...] = ()
    request_id: str | None = None
    since: str | None = None  # log timestamp format, inclusive
    until: str | None = None  # exclusive
    _needles: tuple[tuple[bytes, ...], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        needles = []
        if self.policies:  # as an outcome's policy: every line lists all *checked* policies
            needles.append(tuple(f'"policy"{sep}'.encode() + orjson.dumps(p) for p in self.policies for sep in (":", ": ")))
        for values in (self.models, self.key_ids):
            if values:
                needles.append(tuple(orjson.dumps(v) for v in values))
        if self.request_id:
            needles.append((self.request_id.encode(),))
        # the writer is orjson (compact); the spaced form keeps other writers' lines in
        if self.decisions and FAIL_OPEN not in self.decisions:
            needles.append(tuple(f'"decision"{sep}"{d}"'.encode() for d in self.decisions for sep in (":", ": ")))
        if self.directions:
            needles.append(tuple(f'"direction"{sep}"{d}"'.encode() for d in self.directions for sep in (":", ": ")))
        self._needles = tuple(needles)

    @property
    def empty(self) -> bool:
        return not (self.policies or self.decisions or self.directions or self.models or self.key_ids
                    or self.request_id or self.since or self.until)

    @property
    def decided_by_bytes(self) -> bool:
        """True when `maybe` alone is exact: only policy, decision and direction filters, whose
        byte patterns (`"policy":"S1"`, `"decision":"block"`) cannot occur anywhere else in a
        line (inside a string value they would be escaped)."""
        return not (self.models or self.key_ids or self.request_id or self.since or self.until
                    or FAIL_OPEN in self.decisions)

    def maybe(self, line: bytes) -> bool:
        """A cheap necessary condition on the raw line (no parsing)."""
        for alternatives in self._needles:
            if not any(n in line for n in alternatives):
                return False
        return True

    def match(self, r: Any) -> bool:
        """`r` is a record dict, or anything with the same `.get` (logstats' msgspec structs)."""
        ts = r.get("ts") or ""
        if self.since and ts < self.since:
            return False
        if self.until and ts >= self.until:
            return False
        if self.request_id and r.get("request_id") != self.request_id:
            return False
        if self.decisions and not any(_is(r, d) for d in self.decisions):
            return False
        if self.directions and r.get("direction") not in self.directions:
            return False
        if self.models and r.get("model") not in self.models:
            return False
        if self.key_ids and r.get("key_id") not in self.key_ids:
            return False
        return not self.policies or any(p in (r.get("policies") or ()) for p in self.policies)


def _is(record: dict[str, Any], decision: str) -> bool:
    if decision == FAIL_OPEN:
        return bool(record.get("fail_open"))
    return record.get("decision") == decision


def kind(record: dict[str, Any]) -> str:
    """The decision as counted: a request that passed only by failing open is `fail_open`, never `allow`."""
    decision = record.get("decision") or "allow"
    if decision == "allow" and record.get("fail_open"):
        return FAIL_OPEN
    return decision


# --- iteration ---------------------------------------------------------------------------------
def iter_oldest(path: Path, filt: Filter | None = None) -> Iterator[dict[str, Any]]:
    """Every matching record, oldest first."""
    filt = filt or Filter()
    for file in log_files(path):
        for line in _lines_forward(file):
            if filt.maybe(line):
                record = parse(line)
                if record is not None and filt.match(record):
                    yield record


@dataclass(slots=True)
class Budget:
    """A time limit for a newest-first scan (the web view must answer even when a filter
    matches nothing in a huge log). `reached_ts` is the timestamp of the last line examined
    when the limit stopped the scan: the caller can offer to continue from there."""

    seconds: float
    deadline: float = 0.0
    reached_ts: str | None = None

    def start(self) -> None:
        import time

        self.deadline = time.monotonic() + self.seconds

    def over(self) -> bool:
        import time

        return time.monotonic() > self.deadline


def iter_newest(path: Path, filt: Filter | None = None, budget: Budget | None = None) -> Iterator[dict[str, Any]]:
    """Every matching record, newest first; stops at the first record older than `filt.since`,
    or when `budget` runs out (then `budget.reached_ts` says how far back it got)."""
    filt = filt or Filter()
    if budget is not None:
        budget.start()
    seen = 0
    for file in reversed(log_files(path)):
        if filt.until and _first_ts(file) >= filt.until:
            continue  # paging back through history: this whole file is newer
        for line in _lines_backward(file):
            if filt.since and not _maybe_newer(line, filt.since):
                return
            if filt.until and _raw_ts(line) >= filt.until:
                continue
            seen += 1
            if budget is not None and seen % 64 == 0 and budget.over():
                budget.reached_ts = _raw_ts(line)
                return
            if filt.maybe(line):
                record = parse(line)
                if record is not None and filt.match(record):
                    yield record


def _raw_ts(line: bytes) -> str:
    at = line.find(b'"ts":"')
    return line[at + 6: at + 33].decode("ascii", "replace") if at >= 0 else ""


def _first_ts(file: Path) -> str:
    """The timestamp of a file's first line ("" if unknown: then the file is read)."""
    try:
        with _open(file) as fh:
            return _raw_ts(fh.readline())
    except OSError:
        return ""


def _maybe_newer(line: bytes, since: str) -> bool:
    """False when the line's timestamp is older than `since` (read from the raw bytes)."""
    at = line.find(b'"ts":"')
    if at < 0:
        return True
    return line[at + 6: at + 6 + len(since)].decode("ascii", "replace") >= since


def recent(path: Path, filt: Filter | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The `limit` newest matching records, oldest first (as a terminal shows them)."""
    out: list[dict[str, Any]] = []
    for record in iter_newest(path, filt):
        out.append(record)
        if len(out) >= limit:
            break
    out.reverse()
    return out


def find_request(path: Path, request_id: str) -> list[dict[str, Any]]:
    """Every record of one request (input, output, stream windows), in time order.

    Searches newest first; lines of one request are written within seconds of each
    other, so once matches were found the search stops after a file without any."""
    found: list[dict[str, Any]] = []
    needle = request_id.encode()
    for file in reversed(log_files(path)):
        in_file = []
        for line in _lines_backward(file):
            if needle in line:
                record = parse(line)
                if record is not None and record.get("request_id") == request_id:
                    in_file.append(record)
        if not in_file and found:
            break
        found.extend(in_file)
    found.sort(key=lambda r: r.get("ts") or "")
    return found


def follow(path: Path, filt: Filter | None = None, poll_s: float = 0.5,
           stop: Iterable[Any] | None = None) -> Iterator[dict[str, Any]]:
    """New records as they are written (`tail -f`), surviving rotation.

    Starts at the current end of the live file. When the file is rotated (its inode
    changes or it shrinks), the rest of the old file is read and the new one followed
    from its start. `stop` is polled between reads (an iterator whose exhaustion ends
    the loop; tests use it, the CLI runs until Ctrl-C)."""
    import time

    filt = filt or Filter()
    path = Path(path)
    ticks = iter(stop) if stop is not None else None
    fh = None
    inode = None
    while fh is None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - open across yields; closed in `finally`
        except FileNotFoundError:
            if ticks is not None and next(ticks, StopIteration) is StopIteration:
                return
            time.sleep(poll_s)
    fh.seek(0, os.SEEK_END)
    inode = os.fstat(fh.fileno()).st_ino
    partial = b""
    try:
        while True:
            chunk = fh.read()
            if chunk:
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    if line and filt.maybe(line):
                        record = parse(line)
                        if record is not None and filt.match(record):
                            yield record
                continue
            try:
                st = os.stat(path)
                rotated = st.st_ino != inode or st.st_size < fh.tell()
            except FileNotFoundError:
                rotated = False
            if rotated:
                fh.close()
                fh = open(path, "rb")  # noqa: SIM115 - as above
                inode = os.fstat(fh.fileno()).st_ino
                partial = b""
                continue
            if ticks is not None and next(ticks, StopIteration) is StopIteration:
                return
            time.sleep(poll_s)
    finally:
        fh.close()
