"""The Docker deployment, tested as far as this machine allows without an image registry.

- `docker-compose config` (Debian's docker-compose) validates the compose file, and the
  environment it resolves reaches the gateway as meant: an unset OPENAI_API_KEY becomes
  `RSAFE_UPSTREAM_API_KEY: ''`, which must mean "forward the client's own key".
- The image's entrypoint (scripts/docker-entrypoint.sh) over a root-owned log folder, the
  way Docker creates `./logs`: started as root it hands the folder to uid 10001 and drops to
  it; started as uid 10001 it stops with a message instead of a traceback and a crash loop.
  Run with setpriv as the image's user, in a temporary folder (needs root; skipped otherwise).
- Live reload of a policies file saved by rename (what reaches the container through the
  folder mount).
- The Dockerfile and .dockerignore, read as text.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.policystore import PolicyStore
from gateway.settings import Settings
from tests.conftest import TEST_POLICIES
from tests.procs import BANNED_POLICIES
from tests.servers import serve

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"
UID = 10001
EX_CONFIG = 78


# --- docker-compose config -------------------------------------------------------------------

def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    base = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "RSAFE_UPSTREAM", "POLICIES_DIR")}
    return subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), *args], cwd=ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_config_validates(profile):
    run = _compose("--profile", profile, "config")
    assert run.returncode == 0, run.stderr
    services = yaml.safe_load(run.stdout)["services"]
    gateway = services["gateway" if profile == "cpu" else "gateway-gpu"]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    # the policies *folder* is mounted (a rename-save reaches the container), holding policies.yaml
    assert Path(volumes["/config"]).is_dir() and (Path(volumes["/config"]) / "policies.yaml").is_file()
    assert volumes["/logs"] == str(ROOT / "logs")


def test_compose_config_rejects_a_broken_file(tmp_path):
    """The check above can fail: a compose file with a wrong type is refused."""
    bad = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bad["services"]["gateway"]["ports"] = "8080:8080"  # must be a list
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(bad))
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed")
    run = subprocess.run([exe, "-f", str(tmp_path / "docker-compose.yml"), "--profile", "cpu", "config"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "ports" in run.stderr


def _compose_environment() -> dict[str, str]:
    run = _compose("--profile", "cpu", "config")  # OPENAI_API_KEY unset
    assert run.returncode == 0, run.stderr
    env = yaml.safe_load(run.stdout)["services"]["gateway"]["environment"]
    assert env["RSAFE_UPSTREAM_API_KEY"] in ("", None)  # what `${OPENAI_API_KEY:-}` gives
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- empty environment values mean unset ------------------------------------------------------

@pytest.fixture
def gateway_env(monkeypatch, tmp_path, fake):
    """Start a gateway whose settings come from the environment only, as in the container."""
    policies = tmp_path / "policies.yaml"
    policies.write_text(TEST_POLICIES)
    for name in [n for n in os.environ if n.startswith("RSAFE_")]:
        monkeypatch.delenv(name)

    def start(env: dict[str, str]):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RSAFE_POLICIES", str(policies))
        monkeypatch.setenv("RSAFE_UPSTREAM", fake.state.url + "/v1")
        monkeypatch.setenv("RSAFE_BLOCK_LOG", str(tmp_path / "logs" / "blocks.jsonl"))
        return serve(create_app(Settings()))

    return start


def _auth_seen(fake, url: str, client_key: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=client_key, max_retries=0)
    r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "hello"
    return fake.state.calls[-1]["headers"].get("authorization", "")


def test_empty_upstream_key_forwards_the_clients_key(gateway_env, fake):
    with gateway_env({"RSAFE_UPSTREAM_API_KEY": ""}) as url:
        assert _auth_seen(fake, url, "sk-client-own") == "Bearer sk-client-own"


def test_compose_environment_forwards_the_clients_key(gateway_env, fake):
    """The environment docker-compose resolves with OPENAI_API_KEY unset, applied as is."""
    env = _compose_environment()
    with gateway_env({k: v for k, v in env.items() if k not in ("RSAFE_UPSTREAM",)}) as url:
        assert _auth_seen(fake, url, "sk-client-own") == "Bearer sk-client-own"


def test_a_set_upstream_key_replaces_the_clients_key(gateway_env, fake):
    with gateway_env({"RSAFE_UPSTREAM_API_KEY": "sk-gateway"}) as url:
        assert _auth_seen(fake, url, "sk-client-own") == "Bearer sk-gateway"


def test_empty_values_are_unset_for_every_setting(monkeypatch):
    for name in [n for n in os.environ if n.startswith("RSAFE_")]:
        monkeypatch.delenv(name)
    defaults = Settings()
    empty = {f"RSAFE_{name.upper()}" for name in Settings.model_fields}
    for name in empty:
        monkeypatch.setenv(name, "")
    settings = Settings()  # JSON-typed ones (gateway keys, routes) included: no parse error
    assert settings.model_dump() == defaults.model_dump()
    assert settings.upstream_api_key is None and settings.admin_key is None and settings.gateway_keys == []


# --- the entrypoint over a root-owned log folder ---------------------------------------------

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="the entrypoint tests chown and switch users: they need root and setpriv",
)


def _as_user(*cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", *cmd]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder uid 10001 can reach (pytest's tmp_path is mode 700), with `logs/` as Docker
    creates a missing bind-mount source: owned by root, mode 755."""
    base = Path(tempfile.mkdtemp(prefix="rsafe-entrypoint-"))
    try:
        base.chmod(0o755)
        (base / "logs").mkdir(mode=0o755)
        os.chown(base / "logs", 0, 0)
        (base / "out").mkdir()
        os.chown(base / "out", UID, UID)  # where the probe (running as the user) reports
        reach = subprocess.run(_as_user("test", "-r", str(ENTRYPOINT)), capture_output=True)
        if reach.returncode != 0:
            pytest.skip(f"uid {UID} cannot read {ENTRYPOINT} (the checkout's folders are not world-readable)")
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _probe(out: Path, log: Path) -> list[str]:
    """A stand-in for `rsafe serve --block-log LOG`: records its uid and HOME, appends to the log."""
    script = 'id -u > "$1"; echo "$HOME" >> "$1"; echo "{}" >> "$3"'
    return ["sh", "-c", script, "sh", str(out), "--block-log", str(log)]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


@needs_root
def test_entrypoint_as_root_hands_the_folder_over_and_drops_privileges(scratch):
    logs = scratch / "logs"
    (logs / "blocks.jsonl").write_text('{"old": 1}\n')  # left by an earlier run as root
    (logs / "blocks.jsonl.1").write_text("")
    (logs / "unrelated.txt").write_text("not ours")
    out = scratch / "out" / "probe.txt"
    run = _run([str(ENTRYPOINT), *_probe(out, logs / "blocks.jsonl")])
    assert run.returncode == 0, run.stderr
    uid, home = out.read_text().split()
    assert uid == str(UID), "the command must run as the unprivileged user"
    assert home != "/root"
    assert logs.stat().st_uid == UID
    assert (logs / "blocks.jsonl").stat().st_uid == UID and (logs / "blocks.jsonl.1").stat().st_uid == UID
    assert (logs / "blocks.jsonl").read_text() == '{"old": 1}\n{}\n'
    assert (logs / "unrelated.txt").stat().st_uid == 0, "only the block log's files are handed over"
    assert out.stat().st_uid == UID


@needs_root
def test_entrypoint_as_root_creates_a_missing_folder(scratch):
    log = scratch / "logs" / "nested" / "blocks.jsonl"
    out = scratch / "out" / "probe.txt"
    run = _run([str(ENTRYPOINT), *_probe(out, log)])
    assert run.returncode == 0, run.stderr
    assert log.parent.stat().st_uid == UID and log.read_text() == "{}\n"


@needs_root
def test_entrypoint_as_the_user_over_a_root_owned_folder_stops_with_a_message(scratch):
    out = scratch / "out" / "probe.txt"
    run = _run(_as_user(str(ENTRYPOINT), *_probe(out, scratch / "logs" / "blocks.jsonl")))
    assert run.returncode == EX_CONFIG
    assert not out.exists(), "the command must not start"
    message = run.stderr
    assert "cannot write the block log" in message and str(scratch / "logs") in message
    assert "owned by uid 0, mode 755" in message and f"chown {UID}" in message and "--block-log -" in message
    assert "Traceback" not in message


@needs_root
def test_entrypoint_as_the_user_reads_the_log_path_from_the_environment(scratch):
    out = scratch / "out" / "probe.txt"
    probe = ["sh", "-c", 'id -u > "$1"', "sh", str(out)]
    run = _run(_as_user(str(ENTRYPOINT), *probe), env={"RSAFE_BLOCK_LOG": str(scratch / "logs" / "b.jsonl")})
    assert run.returncode == EX_CONFIG and "logs/b.jsonl" in run.stderr
    run = _run(_as_user(str(ENTRYPOINT), *probe, f"--block-log={scratch}/logs/c.jsonl"))
    assert run.returncode == EX_CONFIG and "logs/c.jsonl" in run.stderr


@needs_root
def test_entrypoint_as_the_user_over_a_writable_folder_runs(scratch):
    os.chown(scratch / "logs", UID, UID)
    out = scratch / "out" / "probe.txt"
    run = _run(_as_user(str(ENTRYPOINT), *_probe(out, scratch / "logs" / "blocks.jsonl")))
    assert run.returncode == 0, run.stderr
    assert out.read_text().split()[0] == str(UID)
    assert (scratch / "logs" / "blocks.jsonl").read_text() == "{}\n"


@needs_root
def test_entrypoint_with_the_block_log_on_stdout_needs_no_folder(scratch):
    out = scratch / "out" / "probe.txt"
    run = _run(_as_user(str(ENTRYPOINT), "sh", "-c", 'id -u > "$1"', "sh", str(out), "--block-log", "-"),
               env={"RSAFE_BLOCK_LOG": "/nonexistent/blocks.jsonl"})
    assert run.returncode == 0, run.stderr
    assert out.read_text().strip() == str(UID)


@needs_root
def test_entrypoint_as_root_fails_clearly_on_a_folder_it_cannot_hand_over(scratch):
    """A read-only mount stands in for a file system that refuses chown: the folder is
    immutable (chattr +i) where supported, else skipped."""
    logs = scratch / "logs"
    if subprocess.run(["chattr", "+i", str(logs)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        out = scratch / "out" / "probe.txt"
        run = _run([str(ENTRYPOINT), *_probe(out, logs / "blocks.jsonl")])
    finally:
        subprocess.run(["chattr", "-i", str(logs)], capture_output=True)
    assert run.returncode == EX_CONFIG and not out.exists()
    assert "not writable by uid 10001" in run.stderr and "--block-log -" in run.stderr


# --- live reload through a folder mount: a save by rename ----------------------------------

async def test_a_rename_save_is_reloaded_even_with_the_same_size_and_mtime(tmp_path):
    path = tmp_path / "policies.yaml"
    path.write_text(TEST_POLICIES)
    store = PolicyStore(path)
    old_version, st = store.current.version, path.stat()
    # an editor's save: a new file, renamed over the old one (a new inode); same length, same mtime
    edited = TEST_POLICIES.replace("Blocked by VIOLENCE.", "Stopped by VIOLENCE!")
    assert len(edited) == len(TEST_POLICIES)
    new = tmp_path / ".policies.yaml.swp"
    new.write_text(edited)
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert await store.reload_if_changed()
    assert store.current.version != old_version
    assert store.current.by_id["VIOLENCE"].message == "Stopped by VIOLENCE!"


# --- the Dockerfile and the build context ----------------------------------------------------

def _run_lines() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.startswith("RUN ")]


def test_no_failure_is_hidden_in_the_image_build():
    for line in _run_lines():
        assert "|| true" not in line and "|| :" not in line, line


def test_the_image_installs_the_cpu_torch_wheel_and_proves_it_imports():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    torch_line = next(line for line in _run_lines() if "torch==2.13.0" in line)
    assert "--index-url" in torch_line and "TORCH_INDEX_URL" in torch_line
    assert any("rsafe policies validate" in line and "import torch" in line for line in _run_lines())


def test_the_entrypoint_is_the_image_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY scripts/docker-entrypoint.sh /usr/local/bin/rsafe-entrypoint" in text
    assert 'ENTRYPOINT ["rsafe-entrypoint"]' in text
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    assert "\nUSER " not in text, "the entrypoint drops privileges itself (it must start as root to fix /logs)"


def test_dockerignore_keeps_heavy_and_private_paths_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for path in (".venv", ".venv*", ".cache", "runs", "reports", ".git", "logs", ".env"):
        assert path in patterns, path
    text = (ROOT / "Dockerfile").read_text()
    for needed in ("pyproject.toml", "README.md", "gateway", "guard", "training", "policies.yaml", "scripts"):
        assert needed in text and needed not in patterns, needed


# --- the built image, where a Docker daemon and the image are here ----------------------------
# Build it with scripts/docker_build_local.sh (no registry needed) or `docker build -t rsafe-gateway:test .`.

IMAGE = os.environ.get("RSAFE_DOCKER_IMAGE", "rsafe-gateway:test")


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None or _docker("info", timeout=30).returncode != 0:
        pytest.skip("no Docker daemon here")
    if _docker("image", "inspect", IMAGE).returncode != 0:
        pytest.skip(f"image {IMAGE} not built (scripts/docker_build_local.sh)")
    return IMAGE


@pytest.fixture
def deployment(scratch):
    """A compose-like layout: config/ (the policies folder) and logs/ (root-owned, mode 755)."""
    config = scratch / "config"
    config.mkdir()
    (config / "policies.yaml").write_text(BANNED_POLICIES)
    return scratch


def _wait_healthy(base: str, cid: str, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(base + "/healthz", timeout=2)
            return
        except httpx.HTTPError:
            state = _docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip()
            assert state == "true", _docker("logs", cid).stderr
            assert time.monotonic() < deadline, "the container did not answer /healthz"
            time.sleep(0.5)


@needs_root
def test_image_starts_over_a_root_owned_logs_mount_and_reloads_a_rename_save(image, deployment, fake):
    from tests.servers import free_port

    port = free_port()
    logs, config = deployment / "logs", deployment / "config"
    run = _docker("run", "-d", "--network", "host", "-v", f"{logs}:/logs", "-v", f"{config}:/config:ro",
                  "-e", f"RSAFE_UPSTREAM={fake.state.url}/v1", "-e", "RSAFE_UPSTREAM_API_KEY=", image,
                  "rsafe", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--policies", "/config/policies.yaml", "--block-log", "/logs/blocks.jsonl")
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, cid)
        status = _docker("exec", cid, "cat", "/proc/1/status").stdout
        assert re.search(rf"^Uid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$", status, re.M), status
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-client-own", max_retries=0)
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
        assert r.choices[0].message.content == "hello"
        assert fake.state.calls[-1]["headers"]["authorization"] == "Bearer sk-client-own"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a forbidden-word"}])
        log = logs / "blocks.jsonl"
        deadline = time.monotonic() + 10
        while (not log.exists() or not log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log.stat().st_uid == UID and '"BANNED"' in log.read_text()
        # an editor's save: a new file renamed over the old one, in the mounted folder
        new = config / ".policies.yaml.tmp"
        new.write_text(BANNED_POLICIES.replace("[forbidden-word]", "[forbidden-word, renamed-word]"))
        os.replace(new, config / "policies.yaml")
        deadline = time.monotonic() + 15
        while True:
            try:
                client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a renamed-word"}])
            except openai.BadRequestError:
                break
            assert time.monotonic() < deadline, "the container never reloaded the rename-saved policies"
            time.sleep(0.5)
    finally:
        _docker("rm", "-f", cid)


@needs_root
def test_image_run_as_the_user_over_a_root_owned_mount_stops_with_a_message(image, deployment):
    logs, config = deployment / "logs", deployment / "config"
    run = _docker("run", "--rm", "--network", "host", "--user", str(UID), "-v", f"{logs}:/logs",
                  "-v", f"{config}:/config:ro", image)
    assert run.returncode == EX_CONFIG, run.stderr
    assert "cannot write the block log /logs/blocks.jsonl" in run.stderr and "Traceback" not in run.stderr


@needs_root
def test_compose_cpu_profile_starts_on_a_fresh_checkout(image, fake, tmp_path):
    """docker-compose.yml as shipped, its cpu service started (volumes, environment, restart, the
    image's entrypoint), with only what host networking needs changed: no published port, a free port in
    the command and the healthcheck, the prebuilt image. ./logs does not exist: Docker creates it
    owned by root, which used to make this a crash loop."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed")
    from tests.servers import free_port

    port = free_port()
    project = Path(tempfile.mkdtemp(prefix="rsafe-compose-"))
    project.chmod(0o755)
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = spec["services"]["gateway"]
    service.pop("ports")
    service.pop("build")
    service.update(image=image, network_mode="host")
    service["command"] = [("127.0.0.1" if c == "0.0.0.0" else str(port) if c == "8080" else c) for c in service["command"]]
    service["healthcheck"]["test"] = [t.replace("8080", str(port)) for t in service["healthcheck"]["test"]]
    service["healthcheck"]["interval"] = "1s"
    service["environment"]["RSAFE_UPSTREAM"] = fake.state.url + "/v1"
    # the gpu profile's services stay in the file: not started, but Compose v1 still reads them
    (project / "docker-compose.yml").write_text(yaml.safe_dump(spec))
    (project / "policies.yaml").write_text(BANNED_POLICIES)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "POLICIES_DIR", "RSAFE_UPSTREAM")}
    name = f"rsafetest{os.getpid()}"

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "-p", name, *args], cwd=project, env=env, capture_output=True, text=True, timeout=180)

    try:
        up = compose("--profile", "cpu", "up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr
        cid = compose("ps", "-q", "gateway").stdout.strip()
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, cid)
        deadline = time.monotonic() + 60
        while _docker("inspect", "-f", "{{.State.Health.Status}}", cid).stdout.strip() != "healthy":
            assert time.monotonic() < deadline, _docker("logs", cid).stderr
            time.sleep(1)
        assert _docker("inspect", "-f", "{{.RestartCount}}", cid).stdout.strip() == "0"
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-client-own", max_retries=0)
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
        assert fake.state.calls[-1]["headers"]["authorization"] == "Bearer sk-client-own"  # OPENAI_API_KEY unset
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a forbidden-word"}])
        log = project / "logs" / "blocks.jsonl"
        deadline = time.monotonic() + 10
        while (not log.exists() or '"BANNED"' not in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (project / "logs").stat().st_uid == UID and '"BANNED"' in log.read_text()
    finally:
        compose("down", "--remove-orphans", "-t", "5")
        shutil.rmtree(project, ignore_errors=True)
