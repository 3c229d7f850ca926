"""The layout's rules, checked: which package may import which (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_gateway_and_guard_never_import_training():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("gateway", "guard") for p in (ROOT / pkg).rglob("*.py")
                 if "training" in imported_roots(p)]
    assert offenders == []


def test_guard_never_imports_gateway():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "guard").rglob("*.py") if "gateway" in imported_roots(p)]
    assert offenders == []


def test_loading_the_gateway_command_loads_no_training_code():
    code = "import gateway.commands.cli, sys; print(sorted(m for m in sys.modules if m == 'training' or m.startswith('training.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_rsafe_command_has_every_sub_command():
    from typer.main import get_command

    from rsafe.cli import app

    assert {"serve", "check", "eval", "policies", "logs", "guard", "train"} <= set(get_command(app).commands)
