"""A cache of `rsafe logs stats` results for rotated block-log files.

A rotated file (`blocks.jsonl.3`, `.5.gz`) never changes again, so its partial counts can
be kept: the next `stats` only scans the live file and files rotated since. Entries are
keyed by the file's identity and state (path, inode, size, mtime) plus the filter and the
bucket size, so a changed, replaced or compressed file is simply a miss. The live file is
never cached. Entries live in the user's cache folder (`$XDG_CACHE_HOME/rsafe/logstats`,
else `~/.cache/...`); a cache that cannot be read or written is ignored, never an error.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

FORMAT = 1
MAX_ENTRIES = 500


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rsafe" / "logstats"


class StatsCache:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_dir()
        self.hits = 0
        self.misses = 0

    def key(self, file: Path, filt: Any, by: str) -> str | None:
        try:
            st = file.stat()
        except OSError:
            return None
        ident = f"{FORMAT}|{file.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{by}|{filt!r}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def get(self, key: str | None) -> Any | None:
        if key is None:
            return None
        try:
            with open(self.directory / f"{key}.pickle", "rb") as fh:
                value = pickle.load(fh)  # our own cache, in the user's own folder
        except (OSError, pickle.PickleError, EOFError, AttributeError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str | None, value: Any) -> None:
        if key is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.directory / f"{key}.pickle")
            self._trim()
        except OSError:
            return

    def _trim(self) -> None:
        entries = sorted(self.directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
