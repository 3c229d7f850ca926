"""Retention of the block log: rotated files older than N days are deleted.

Why only rotated files: the live file is being written; it rotates by size and its
content then ages out with the file it becomes. A file's modification time is its
last write, so "older than N days" means "nothing in it is newer than N days".

`RetentionTask` runs the pruning at start-up and then hourly, off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import structlog

from gateway.background import BackgroundTask
from gateway.blocklog.reader import log_files

log = structlog.get_logger("rsafe.retention")


def prune_block_logs(path: Path, days: float, now: float | None = None) -> list[Path]:
    """Delete `path`'s rotated files (`path.N`, `path.N.gz`, ...) last written more than `days` ago."""
    cutoff = (now if now is not None else time.time()) - days * 86400
    removed = []
    for file in log_files(path):
        if file == Path(path):
            continue
        try:
            if file.stat().st_mtime < cutoff:
                os.unlink(file)
                removed.append(file)
        except FileNotFoundError:  # rotated or pruned meanwhile
            continue
    return removed


class RetentionTask:
    def __init__(self, path: Path, days: float | None, every_s: float = 3600.0) -> None:
        self.path = path
        self.days = days
        self.every_s = every_s
        self._task = BackgroundTask("block-log-retention", self._loop)

    async def run_once(self) -> list[Path]:
        if not self.days:
            return []
        removed = await asyncio.to_thread(prune_block_logs, self.path, self.days)
        if removed:
            log.info("block_log_pruned", removed=[str(p) for p in removed], retention_days=self.days)
        return removed

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except OSError as exc:
                log.warning("block_log_prune_failed", error=str(exc))
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        if self.days:
            self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
