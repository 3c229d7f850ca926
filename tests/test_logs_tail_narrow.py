"""`rsafe logs tail` in a real 80-column terminal (a pseudo-terminal, so the table is drawn): a request
id is never cut, so any id it prints can be pasted into `rsafe logs show`."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson
import pytest

from tests.fakes.blocklogs import write_log

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(columns: int, *args: str) -> str:
    """Run `rsafe ARGS` attached to a pseudo-terminal `columns` wide; its screen output as text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.commands.cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return ANSI.sub(b"", out).decode().replace("\r\n", "\n")


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("narrow") / "blocks.jsonl"
    write_log(path, 300, files=1, seed=3)
    return path, [orjson.loads(x) for x in path.read_bytes().splitlines() if x]


@pytest.mark.parametrize("columns", [80, 60, 200])
def test_tail_never_cuts_a_request_id(log, columns):
    path, lines = log
    screen = in_terminal(columns, "logs", "tail", "--log", str(path), "-n", "15")
    ids = [r["request_id"] for r in lines[-15:]]
    assert len(ids[0]) == 36  # req_ + 32 hex digits, as the gateway writes them
    printed = re.findall(r"req_[0-9a-f]+", screen)
    assert printed == ids, screen  # every id whole, in order, none cut to a prefix
    assert "…" not in screen
    width = max(len(line) for line in screen.splitlines())
    if columns == 80:
        assert width <= 80, screen  # a table that fits: nothing was wrapped by the terminal
        assert "time (UTC)" in screen and "decision" in screen and "hidden" in screen
    if columns == 200:
        assert "hidden" not in screen and "model" in screen and "guard" in screen


def test_an_id_printed_by_tail_feeds_show(log):
    path, lines = log
    screen = in_terminal(80, "logs", "tail", "--log", str(path), "-n", "3")
    request_id = re.findall(r"req_[0-9a-f]+", screen)[-1]
    shown = in_terminal(80, "logs", "show", request_id, "--log", str(path))
    assert request_id in shown and lines[-1]["request_id"] == request_id
