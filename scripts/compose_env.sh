#!/usr/bin/env bash
# Debian's docker-compose, for tests/test_docker.py (`docker-compose config` validates
# docker-compose.yml; ~20 s, a few MB of Debian python packages). Idempotent.
set -euo pipefail
if ! command -v docker-compose >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
docker-compose version --short
