#!/usr/bin/env bash
# Build the gateway image where no image registry is reachable (`FROM python:3.11-slim` cannot be
# pulled), as on this project's CI machines: a Debian bookworm base made locally with debootstrap
# (Debian's packages only), this machine's CA bundle and package-index settings, then the normal
# Dockerfile on top. Needs root, apt and the Debian mirror; ~10-20 minutes on 2 cores.
#   bash scripts/docker_build_local.sh [TAG]        (default rsafe-gateway:test; tests/test_docker.py uses it)
# The result differs from a normal build only in its base (Debian's python3.11 in a venv at /opt/venv
# instead of the python:3.11-slim image) and in where pip finds wheels (the local wheel store: the
# CPU torch wheel) - the Dockerfile itself is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-rsafe-gateway:test}"
BASE=rsafe-base:bookworm
export DEBIAN_FRONTEND=noninteractive

command -v dockerd >/dev/null && command -v debootstrap >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null; }
if ! docker info >/dev/null 2>&1; then
  (nohup dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  root=$(mktemp -d /tmp/rsafe-rootfs.XXXX)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" http://deb.debian.org/debian
  chroot "$root" python3 -m venv /opt/venv
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"  # this machine's CAs (its index proxy)
  chroot "$root" apt-get clean
  rm -rf "$root/var/lib/apt/lists/"*
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - "$BASE"
  rm -rf "$root"
fi

# The local wheel store (where the CPU torch wheel lies) over HTTP on loopback, for the build's pip.
links=()
wheels="$(pip config get global.find-links 2>/dev/null || true)"
if [ -n "$wheels" ] && [ -d "$wheels" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  (cd "$wheels" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  sleep 1
  links=(--build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
fi
# download.pytorch.org is not reachable here: TORCH_INDEX_URL= takes torch from the wheel store
# (2.13.0+cpu sorts above PyPI's 2.13.0) and everything else from PyPI.
docker build --network host -t "$TAG" --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_INDEX_URL= "${links[@]}" .
docker image ls "$TAG"
