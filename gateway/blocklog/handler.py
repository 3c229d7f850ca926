"""A size-rotated log file that several processes append to safely (`rsafe serve --workers N`).

`logging.handlers.RotatingFileHandler` is per process: two workers each rotate on their
own, and one keeps writing into the file the other renamed. Here every line is written
under an exclusive `flock` on a lock file beside the log (`.<name>.lock` in the same
folder: it never rotates, so every process locks the same inode, and its name does not
start with the log's, so readers and retention never take it for a rotated file):

- the line, newline included, goes out in one `os.write` on an `O_APPEND` descriptor
  (looping only on a short write, still under the lock), so no other writer's bytes can
  land inside it, whatever its length (PIPE_BUF does not apply: nobody writes unlocked);
- before writing, the handler compares its descriptor's inode with the path's: if another
  process rotated the file, it reopens the new one;
- if the line would take the file past `max_bytes`, it rotates first, with the same names
  as RotatingFileHandler (`path.1` is the newest backup, `path.<backups>` the oldest).

`backups=0` or `max_bytes=0` never rotates (as RotatingFileHandler).

`SharedStdoutHandler` is the same discipline for `--block-log -` with several workers: the
workers inherit one stdout pipe, where a write over PIPE_BUF (4 KiB) may interleave with
another's; each line is one locked write (the lock file is the supervisor's, named by
RSAFE_STDOUT_LOCK; flock on the inherited pipe itself would not exclude, since the workers
share its open file description).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path


STDOUT_LOCK_ENV = "RSAFE_STDOUT_LOCK"


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class SharedStdoutHandler(logging.Handler):
    def __init__(self, lock_path: str, fd: int = 1) -> None:
        super().__init__()
        self._fd = fd
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            with _flocked(self._lock_fd):
                _write_all(self._fd, data)
        except Exception:  # noqa: BLE001 - logging must not raise into the caller
            self.handleError(record)

    def close(self) -> None:
        try:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
        finally:
            super().close()


class SharedRotatingFileHandler(logging.Handler):
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_fd = -1
        self._fd = -1
        self._ino = -1
        self._open()

    def _open(self) -> None:
        self._lock_fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        with self._locked():
            self._reopen()

    # ---- the file ------------------------------------------------------------------
    def _reopen(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._ino = os.fstat(self._fd).st_ino

    def _current(self) -> None:
        """Reopen if the path is no longer the file we hold (rotated, pruned or removed)."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = -1
        if ino != self._ino:
            self._reopen()

    def _rotate(self) -> None:
        # a backup may vanish meanwhile (retention prunes without this lock): skip it
        for i in range(self.backups - 1, 0, -1):
            try:
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
            except FileNotFoundError:
                pass
        try:
            os.replace(self.path, f"{self.path}.1")
        except FileNotFoundError:
            pass
        self._reopen()

    def _locked(self):
        return _flocked(self._lock_fd)

    # ---- logging.Handler -----------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            if self._lock_fd < 0:  # a line after close() (a request finishing during shutdown): reopen, as FileHandler does
                self._open()
            with self._locked():
                self._current()
                if self.max_bytes > 0 and self.backups > 0:
                    size = os.fstat(self._fd).st_size
                    if size and size + len(data) > self.max_bytes:
                        self._rotate()
                _write_all(self._fd, data)
        except Exception:  # noqa: BLE001 - logging must not raise into the caller
            self.handleError(record)

    def close(self) -> None:
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
        finally:
            super().close()
