"""`rsafe serve --block-log -`: the block log as JSON lines on stdout (for platforms whose log
pipeline collects stdout), nothing else on stdout, and no file written. A real `rsafe serve`
process, the scripted fake upstream, the official openai client."""

from __future__ import annotations

from tests.procs import BANNED_POLICIES

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.servers import free_port

RSAFE = str(Path(sys.executable).parent / "rsafe")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_block_log_on_stdout(tmp_path, fake, how):
    (tmp_path / "policies.yaml").write_text(BANNED_POLICIES)
    port = free_port()
    args = [RSAFE, "serve", "--port", str(port), "--policies", "policies.yaml", "--upstream", fake.state.url + "/v1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSAFE_")}
    if how == "flag":
        args += ["--block-log", "-"]
    else:
        env["RSAFE_BLOCK_LOG"] = "-"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
                assert time.monotonic() < deadline, "rsafe serve did not start"
                time.sleep(0.2)
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a forbidden-word"}])
        request_id = info.value.response.headers["x-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    lines = [orjson.loads(line) for line in out.splitlines()]  # every stdout line is a JSON record
    assert [(r["request_id"], r["decision"], r["policies"]) for r in lines] == [(request_id, "block", ["BANNED"])]
    assert lines[0]["event"] == "decision" and lines[0]["content_sha256"].startswith("sha256:")
    assert not (tmp_path / "-").exists() and not (tmp_path / "logs").exists(), "no block-log file is written"
    assert "gateway_started" in (tmp_path / "stderr.txt").read_text(), "application logs stay on stderr"
