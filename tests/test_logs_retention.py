"""Retention: rotated block-log files older than N days are pruned; the live file never is."""

from __future__ import annotations

import asyncio
import gzip
import os
import time

from gateway.blocklog.writer import BlockLog
from gateway.blocklog.retention import RetentionTask, prune_block_logs
from gateway.settings import Settings


def _age(path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_prune_by_age_keeps_live_and_recent(tmp_path):
    log = tmp_path / "blocks.jsonl"
    log.write_text("{}\n")
    for name, days in (("blocks.jsonl.1", 1), ("blocks.jsonl.2", 8), ("blocks.jsonl.3.gz", 30)):
        (tmp_path / name).write_bytes(gzip.compress(b"{}\n") if name.endswith(".gz") else b"{}\n")
        _age(tmp_path / name, days)
    _age(log, 100)
    (tmp_path / "unrelated.jsonl").write_text("{}\n")
    _age(tmp_path / "unrelated.jsonl", 100)
    removed = prune_block_logs(log, 7)
    assert sorted(p.name for p in removed) == ["blocks.jsonl.2", "blocks.jsonl.3.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.jsonl", "blocks.jsonl.1", "unrelated.jsonl"]


def test_setting_and_task(tmp_path, monkeypatch):
    monkeypatch.setenv("RSAFE_BLOCK_LOG_RETENTION_DAYS", "2.5")
    assert Settings().block_log_retention_days == 2.5
    log = tmp_path / "blocks.jsonl"
    writer = BlockLog(log, max_bytes=10, backups=3)  # the real writer creates the live file
    writer.close()
    (tmp_path / "blocks.jsonl.1").write_text("{}\n")
    _age(tmp_path / "blocks.jsonl.1", 3)

    async def main():
        task = RetentionTask(log, 2.5, every_s=3600)
        task.start()
        for _ in range(100):
            if not (tmp_path / "blocks.jsonl.1").exists():
                break
            await asyncio.sleep(0.02)
        await task.stop()
        assert await RetentionTask(log, None).run_once() == []  # no retention: nothing is touched

    asyncio.run(main())
    assert not (tmp_path / "blocks.jsonl.1").exists() and log.exists()
