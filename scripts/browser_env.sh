#!/usr/bin/env bash
# Headless Chromium for the /admin browser test (tests/test_admin_browser.py). Idempotent.
# - Debian's chromium + chromium-driver via apt (Playwright's own browser download is not used).
# - Playwright for Python into the project venv (it drives /usr/bin/chromium; no `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install --quiet playwright
fi

chromium --version 2>/dev/null | head -1
"$VENV/bin/python" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
