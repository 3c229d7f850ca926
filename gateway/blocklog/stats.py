"""`rsafe logs stats`: counts, rates, latency percentiles and failure-mode activations.

What is counted (one block-log line = one decision on one direction of one request):
- per decision: allow, flag, rewrite, block, error, and `fail_open` on its own: a request
  that went through only because a guard failed and its policy fails open is never a pass;
- per policy: how often each action fired, and its guard failures split into fail-closed
  (treated as violated) and fail-open (let through);
- per hour or day: decisions and blocks;
- guard latency percentiles, overall and per guard backend.

Speed: `gateway/blocklog/scan.py` scans each file in one pass with no per-line Python code on
the common path; several files (a rotated log) are scanned by a process pool, one file per
task, and the partial counts merged. 1M lines take a few seconds (benchmarks/logs_stats.py).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from gateway.blocklog.cache import StatsCache
from gateway.blocklog.counts import Stats
from gateway.blocklog.reader import Filter, log_files, ts_to_epoch
from gateway.blocklog.scan import scan_file

_PARALLEL_BYTES = 8 * 1024 * 1024  # below this, a process pool costs more than it saves


def _plain(s: Stats) -> Stats:
    """defaultdicts with lambdas do not pickle: plain containers (for the pool and the cache)."""
    s.policies, s.buckets, s.latency = dict(s.policies), dict(s.buckets), dict(s.latency)
    return s


def _scan_task(args: tuple[str, Filter, str]) -> Stats:
    path, filt, by = args
    return _plain(scan_file(Path(path), filt, by))


def compute(path: Path, filt: Filter | None = None, by: str = "hour", workers: int | None = None,
            cache: StatsCache | None = None) -> Stats:
    """Stats over every file of the block log (rotated and .gz included). With a `cache`,
    rotated files already counted (same file, same filter) are not scanned again."""
    filt = filt or Filter()
    files = log_files(path)
    if filt.since:  # a rotated file last written before `since` holds nothing newer
        cutoff = ts_to_epoch(filt.since)
        files = [f for f in files if f.stat().st_mtime >= cutoff - 1]
    total = Stats(by=by)
    keys: dict[Path, str | None] = {}
    if cache is not None:
        todo = []
        for f in files:
            keys[f] = None if f == Path(path) else cache.key(f, filt, by)
            cached = cache.get(keys[f])
            if cached is None:
                todo.append(f)
            else:
                total.merge(cached)
        files = todo
    workers = workers if workers is not None else min(len(files), os.cpu_count() or 1)
    big = sum(f.stat().st_size for f in files) >= _PARALLEL_BYTES
    if workers > 1 and len(files) > 1 and big:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_scan_task, [(str(f), filt, by) for f in files]))
    else:
        parts = [_plain(scan_file(f, filt, by)) for f in files]
    for f, part in zip(files, parts):
        if cache is not None:
            cache.put(keys.get(f), part)
        total.merge(part)
    return total


def dumps(summary: dict[str, Any]) -> bytes:
    return orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
