"""The policies in force, reloaded when `policies.yaml` changes.

An invalid edit is rejected with the validation message (file:line: field) in the
log and in `/readyz`; the gateway keeps serving the last good version. When the
`settings.guard` section changes, a new guard is built off the event loop and
swapped in; the old one is closed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from gateway.background import BackgroundTask
from guard.errors import GuardEngineError
from guard.policies import PolicySet

log = structlog.get_logger("rsafe.policies")

OnChange = Callable[[PolicySet, PolicySet], Awaitable[None]]


class PolicyStore:
    def __init__(self, path: Path, poll_s: float = 1.0) -> None:
        self.path = path
        self.poll_s = poll_s
        self.current = PolicySet.load(path)  # start-up: an invalid file is fatal
        self.loaded_at = time.time()
        self.last_error: str | None = None
        self.reloads = {"ok": 0, "rejected": 0}
        self._stamp = self._mtime()
        self._task = BackgroundTask("policy-watch", self._watch)
        self._on_change: list[OnChange] = []
        self._on_state: list[Callable[[], None]] = []

    def on_change(self, callback: OnChange) -> None:
        self._on_change.append(callback)

    def on_state(self, callback: Callable[[], None]) -> None:
        """`callback()` runs after every reload attempt (ok or rejected), synchronously, before
        anything else can see the new state: what `--workers` metrics need to stay in step."""
        self._on_state.append(callback)

    def _state_changed(self) -> None:
        for callback in self._on_state:
            callback()

    def _mtime(self) -> tuple[int, int, int, int] | None:
        """The file's identity and state, read by path on every poll: an editor that saves by
        writing a new file and renaming it over the old one gives a new inode, seen even when the
        size and the mtime (coarse on some file systems) come out the same."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    async def reload_if_changed(self) -> bool:
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            new = await asyncio.to_thread(PolicySet.load, self.path)
        except GuardEngineError as exc:
            self.last_error = str(exc)
            self.reloads["rejected"] += 1
            self._state_changed()
            log.error("policies_reload_rejected", path=str(self.path), error=str(exc), serving=self.current.version)
            return False
        if new.version == self.current.version:
            self.last_error = None
            self._state_changed()
            return False
        old, self.current = self.current, new
        self.loaded_at = time.time()
        self.last_error = None
        self.reloads["ok"] += 1
        self._state_changed()
        log.info("policies_reloaded", path=str(self.path), version=new.version, previous=old.version)
        for callback in self._on_change:
            try:
                await callback(old, new)
            except Exception as exc:  # noqa: BLE001 - a failed swap keeps the old guard serving
                self.last_error = f"guard rebuild failed: {exc}"
                log.error("guard_rebuild_failed", error=str(exc))
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.reload_if_changed()

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
