"""The block log: one JSON line per decision that is not a plain allow (fields: `schema.Record`).

Written through structlog to a size-rotated file that several worker processes can share
(`gateway/blocklog/handler.py`: one locked append per line, rotation seen by all). The write itself
happens on a `QueueListener` thread, so a slow disk never stalls the event loop. Content is
never written unless the operator turns `log_content` on; otherwise a SHA-256
prefix and the length identify it. Keys (upstream or gateway) never reach it.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import queue
import sys
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway.blocklog import schema
from gateway.blocklog.handler import STDOUT_LOCK_ENV, SharedRotatingFileHandler, SharedStdoutHandler
from gateway.pipeline import Decision

MAX_REASONING_CHARS = 4000


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def content_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


STDOUT = "-"


def _handler(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    """`-` (`--block-log -`): JSON lines on stdout, for platforms whose log pipeline collects stdout
    (application logs go to stderr); otherwise a size-rotated file."""
    if str(path) == STDOUT:
        lock = os.environ.get(STDOUT_LOCK_ENV)  # several workers share this stdout: locked lines
        return SharedStdoutHandler(lock) if lock else logging.StreamHandler(sys.stdout)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SharedRotatingFileHandler(path, max_bytes, backups)  # safe for several worker processes


class BlockLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        handler = _handler(path, max_bytes, backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue()  # joinable: see flush()
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._handler = handler
        self._stdlib = logging.Logger(f"rsafe.blocklog.{id(self)}", logging.INFO)
        self._stdlib.addHandler(logging.handlers.QueueHandler(self._queue))
        self._stdlib.propagate = False
        self._log = structlog.wrap_logger(
            self._stdlib,
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(serializer=_orjson_dumps),
            ],
            # its own level: the process's --log-level (structlog's global wrapper) must not
            # silence the block log (at `warning` it dropped every line)
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )
        self._listener.start()

    def record(
        self,
        decision: Decision,
        *,
        request_id: str,
        route: str,
        model: str | None,
        key_id: str | None,
        content: str,
        log_content: bool,
        policy_version: str,
    ) -> None:
        line = schema.Record(
            request_id=request_id,
            route=route,
            key_id=key_id,
            model=model,
            direction=decision.direction.value,
            decision=schema.decision_of(decision.action, decision.error),
            action=decision.action,
            policies=decision.policy_ids,
            outcomes=[schema.Outcome(o.policy_id, o.action, o.reason, o.score) for o in decision.outcomes],
            checked=decision.checked,
            fail_open=decision.fail_open,
            guard=decision.backend,
            decided_by=decision.decided_by,
            latency_ms=round(decision.latency_ms, 3),
            error=decision.error,
            truncated=decision.truncated,
            cached=decision.cached,
            policy_version=policy_version,
            content_sha256=content_digest(content),
            content_len=len(content),
            reasoning=decision.reasoning[:MAX_REASONING_CHARS] if decision.reasoning else None,
            content=content if log_content else None,
        )
        self._log.info(line.event, **schema.fields(line))

    def stream_cut(self, *, request_id: str, route: str, model: str | None, key_id: str | None, error: str,
                   policy_version: str) -> None:
        """The upstream stream stopped before it was complete (no guard decision: `decision: error`,
        `decided_by: upstream`, `event: upstream_stream_cut`); the same keys as a decision line but the content's."""
        line = schema.Record(
            request_id=request_id, route=route, key_id=key_id, model=model, direction="output", decision="error",
            action="error", decided_by="upstream", latency_ms=0.0, error=error, policy_version=policy_version,
            event="upstream_stream_cut",
        )
        self._log.info(line.event, **schema.fields(line, leave_out=schema.NOT_ON_STREAM_CUTS))

    def flush(self) -> None:
        """Wait until every line recorded so far is written (tests, and readers in-process)."""
        self._queue.join()
        self._handler.flush()

    def close(self) -> None:
        self._listener.stop()
        self._handler.close()
