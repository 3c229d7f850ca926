"""`rsafe` as a real subprocess on a free loopback port (for tests that need whole processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

# One patterns-only policy (no model to load): what process-level tests serve.
BANNED_POLICIES = """
version: 1
settings:
  guard: {backend: patterns}
policies:
  - id: BANNED
    engine: patterns
    keywords: [forbidden-word]
    message: Blocked by BANNED.
"""

RSAFE = str(Path(sys.executable).parent / "rsafe")
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def rsafe_server(*args: str, env: dict[str, str] | None = None, ready_s: float = 120.0,
                 port: int | None = None, stdout: Any = subprocess.PIPE,
                 stderr: Any = subprocess.STDOUT) -> Iterator[tuple[str, subprocess.Popen]]:
    """Runs `rsafe <args> --port P` until /healthz answers; yields (base URL, process); on exit
    SIGTERM, then SIGKILL to the process group if it is still there after 15 s."""
    port = port or free_port()
    proc = subprocess.Popen(
        [RSAFE, *args, "--port", str(port)], cwd=ROOT, stdout=stdout, stderr=stderr,
        text=True, env={**os.environ, **(env or {})}, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    output = proc.stdout.read() if proc.stdout is not None else ""
                    raise RuntimeError(f"rsafe exited with {proc.returncode}:\n{output}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("rsafe did not answer /healthz in time") from None
                time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
