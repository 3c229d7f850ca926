"""The shared rotating block-log handler (gateway/blocklog/handler.py)."""

from __future__ import annotations

import logging

from gateway.blocklog.handler import SharedRotatingFileHandler


def test_a_line_after_close_is_written_not_lost(tmp_path, monkeypatch):
    """A request that finishes while the gateway shuts down logs after the handler closed: the
    handler reopens (as logging.FileHandler does) instead of failing on a closed descriptor."""
    errors: list[logging.LogRecord] = []
    handler = SharedRotatingFileHandler(tmp_path / "blocks.jsonl", max_bytes=0, backups=0)
    monkeypatch.setattr(handler, "handleError", errors.append)
    record = logging.LogRecord("blocks", logging.INFO, __file__, 1, "%s", ("line",), None)
    handler.emit(record)
    handler.close()
    handler.emit(logging.LogRecord("blocks", logging.INFO, __file__, 2, "%s", ("late line",), None))
    handler.close()
    assert errors == []
    assert (tmp_path / "blocks.jsonl").read_text().splitlines() == ["line", "late line"]
