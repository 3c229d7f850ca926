"""`rsafe serve --workers N`: N full gateway processes behind one listening socket.

Uvicorn's supervisor binds the port once and starts N worker processes (spawned: fresh
interpreters, no torch state forked) that all accept on it; the kernel spreads connections
between them. Each worker builds its own gateway from the same settings (`worker_app`, an
app factory): its own guard, upstream pool, policy watcher (so every worker reloads an
edited policies.yaml within `policies_poll_s`) and block-log writer (appends are locked
across processes, see gateway/blocklog/handler.py). A worker that dies is replaced.

Shared state the supervisor sets up, in the environment the workers inherit:
- RSAFE_SERVE_OVERRIDES: the command-line flags (JSON), so a worker's Settings equal the
  supervisor's (environment variables reach the workers as they are);
- PROMETHEUS_MULTIPROC_DIR: a fresh folder per run (removed at exit), so /metrics from any
  worker counts every worker's requests (gateway/metrics.py);
- RSAFE_STDOUT_LOCK: a lock file in that run's folder, for `--block-log -` (gateway/blocklog/handler.py);
- RSAFE_WORKER_THREADS: the CPUs divided among the workers, at least 1: each worker's torch
  threads are capped at it (N workers x 2 spinning OpenMP threads on 2 cores would leave each
  waiting for the other's turn). `configure_threads` applies it, in each worker and in a
  single-process `rsafe serve` (where it is a cap only when set).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from gateway.blocklog.handler import STDOUT_LOCK_ENV

OVERRIDES_ENV = "RSAFE_SERVE_OVERRIDES"
THREADS_ENV = "RSAFE_WORKER_THREADS"


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_threads(settings: Any) -> int | None:
    """Torch's threads for this serving process, set here at its entry point because they are
    process-wide (guard/threads.py): the embedded guard's `threads` option, at most RSAFE_WORKER_THREADS
    when set. Nothing (and no torch import) when no model guard runs or it is not the embedded one.
    Read at start-up: a policy reload that changes `threads` takes effect at the next start."""
    from gateway.service import guard_settings, needs_model_guard
    from guard import threads
    from guard.policies import PolicySet

    policies = PolicySet.load(settings.policies)
    if not needs_model_guard(policies):
        return None
    gs = guard_settings(settings, policies)
    cap = os.environ.get(THREADS_ENV, "")
    return threads.configure(gs.backend, gs.options, int(cap) if cap.isdigit() and int(cap) > 0 else None)


def worker_app():
    """The app factory each worker process calls (uvicorn `factory=True`)."""
    from gateway.app import create_app
    from gateway.commands.logsetup import configure_logging
    from gateway.settings import Settings

    settings = Settings(**json.loads(os.environ.get(OVERRIDES_ENV) or "{}"))
    configure_logging(settings.log_level)
    configure_threads(settings)
    return create_app(settings)


def _multiprocess_supervisor():
    from prometheus_client import multiprocess
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """Uvicorn's, plus: a worker that died without shutting down leaves the metrics'
        live gauges (its own shutdown does this when it exits normally)."""

        def keep_subprocess_alive(self) -> None:
            before = {p.pid for p in self.processes}
            super().keep_subprocess_alive()
            for pid in before - {p.pid for p in self.processes}:
                if pid is not None:
                    multiprocess.mark_process_dead(pid)

    return Supervisor


def run_workers(settings: Any, overrides: dict[str, Any]) -> None:
    """Serve with `settings.workers` processes until SIGINT/SIGTERM (blocking)."""
    import uvicorn

    run_dir = tempfile.mkdtemp(prefix="rsafe-workers-")
    prom_dir = os.path.join(run_dir, "metrics")
    os.mkdir(prom_dir)
    env = {
        OVERRIDES_ENV: json.dumps({k: v for k, v in overrides.items() if v is not None}, default=str),
        "PROMETHEUS_MULTIPROC_DIR": prom_dir,
        STDOUT_LOCK_ENV: os.path.join(run_dir, "stdout.lock"),
        THREADS_ENV: os.environ.get(THREADS_ENV) or str(max(1, cpus() // settings.workers)),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        config = uvicorn.Config(
            "gateway.commands.workers:worker_app", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=5,
        )
        sock = config.bind_socket()
        try:
            _multiprocess_supervisor()(config, sockets=[sock]).run()
        finally:
            sock.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(run_dir, ignore_errors=True)
