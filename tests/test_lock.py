"""requirements/lock.txt pins the whole environment `make serve` / `make test` install (requirements/README.md)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
from packaging.requirements import Requirement  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if raw.strip() and not raw.startswith("#"):
            m = LINE.match(raw.strip())
            assert m, f"not an exact pin: {raw!r}"
            pins[norm(m.group(1))] = m.group(2)
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["eval"] + extras["test"] + extras["train"]]


def test_every_dependency_is_pinned_to_a_version_it_allows():
    pins = lock()
    for req in project_requirements():
        assert norm(req.name) in pins, f"{req.name} is not in requirements/lock.txt: run `make lock`"
        assert req.specifier.contains(pins[norm(req.name)], prereleases=True), f"lock pins {req.name}=={pins[norm(req.name)]}, pyproject wants {req.specifier}"


def test_torch_is_the_cpu_build_alone():
    pins = lock()
    assert pins["torch"] == "2.13.0"
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(pins)
    assert "rsafe-gateway" not in pins  # the project itself is installed editable, not pinned
    assert {"pip", "setuptools", "wheel"} <= set(pins)


def test_the_environment_running_the_tests_is_the_locked_one():
    pins = lock()
    for req in project_requirements():
        installed = metadata.version(req.name).split("+")[0]
        assert installed == pins[norm(req.name)], f"{req.name} {installed} installed, lock says {pins[norm(req.name)]}"


def test_makefile_installs_with_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("-c $(LOCK)" in line for line in installs)
    assert "LOCK := requirements/lock.txt" in makefile and "\nlock:" in makefile
