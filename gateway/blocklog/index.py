"""An incremental index of blocks per policy per hour, for the web view's chart.

Scanning a large block log on every page load would be slow, so the counts are kept
per file and extended with only the bytes written since the last look. Files are
identified by (device, inode): RotatingFileHandler renames the live file to `.1`
(same inode, so its counts and read offset carry over) and opens a new one (read from
the start). A file that disappears takes its counts with it; a file compressed by
logrotate is a new inode and is read once. Files last written before the index's
horizon (the chart's window) are not read at all.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gateway.blocklog import schema
from gateway.blocklog.reader import log_files

_BLOCKING = (b'"block"', b'"error"')


_Line = schema.view("_Line", ("ts", "decision", "outcomes"), outcome=("policy", "action"))
_DECODER = msgspec.json.Decoder(_Line)


@dataclass
class _Part:
    offset: int = 0
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # hour -> policy -> n


class BlockIndex:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._parts: dict[tuple[int, int], _Part] = {}
        self._lock = threading.Lock()

    def refresh(self, horizon_s: float = 86400) -> None:
        """Read what was written since the last call, in files written to within the last
        `horizon_s` seconds (blocking: call it in a thread)."""
        with self._lock:
            seen = set()
            cutoff = time.time() - horizon_s
            for file in log_files(self.path):
                try:
                    st = file.stat()
                except FileNotFoundError:
                    continue
                ident = (st.st_dev, st.st_ino)
                seen.add(ident)
                if st.st_mtime < cutoff and ident not in self._parts:
                    continue
                part = self._parts.get(ident)
                if part is None or st.st_size < part.offset:  # new, or truncated and rewritten
                    part = self._parts[ident] = _Part()
                if file.suffix == ".gz":
                    if part.offset == 0:
                        with gzip.open(file, "rb") as fh:
                            self._count(part, fh.read())
                        part.offset = st.st_size
                elif st.st_size > part.offset:
                    with open(file, "rb") as fh:
                        fh.seek(part.offset)
                        data = fh.read(st.st_size - part.offset)
                    end = data.rfind(b"\n") + 1  # a line still being written waits for the next look
                    self._count(part, data[:end])
                    part.offset += end
            for ident in list(self._parts):
                if ident not in seen:
                    del self._parts[ident]

    @staticmethod
    def _count(part: _Part, data: bytes) -> None:
        """Blocks per policy per hour in `data` (whole lines). Lines without a block or an
        error are dropped on their raw bytes; the rest are decoded at once (msgspec)."""
        a, b = _BLOCKING
        lines = [line for line in data.split(b"\n") if a in line or b in line]
        if not lines:
            return
        chunk = b"\n".join(lines)
        try:
            records = _DECODER.decode_lines(chunk)
        except (msgspec.DecodeError, msgspec.ValidationError):
            records = []
            for line in lines:
                try:
                    records.append(_DECODER.decode(line))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        counts = part.counts
        for r in records:
            if r.decision in ("block", "error") and r.outcomes:
                hour = counts[r.ts[:13]]
                for o in r.outcomes:
                    if o.action == "block":
                        hour[o.policy] += 1

    def blocks(self, since_hour: str) -> dict[str, Counter]:
        """hour (`YYYY-MM-DDTHH`) -> policy -> blocks, for hours >= since_hour."""
        out: dict[str, Counter] = defaultdict(Counter)
        with self._lock:
            for part in self._parts.values():
                for hour, counter in part.counts.items():
                    if hour >= since_hour:
                        out[hour].update(counter)
        return out


def index_for(state: object, path: Path) -> BlockIndex:
    """The app's index (kept on `app.state`, created on first use)."""
    index = getattr(state, "rsafe_block_index", None)
    if index is None or index.path != Path(path):
        index = BlockIndex(path)
        state.rsafe_block_index = index
    return index


