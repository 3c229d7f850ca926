# The gateway image: CPU only (the embedded guard runs on CPU; the reasoning guard is a separate
# vLLM service, see docker-compose.yml).
#
# torch: `torch==2.13.0` from PyPI is the CUDA build (Linux x86_64 wheels there bundle CUDA: several GB
# of nvidia-* wheels). The CPU-only wheel (`2.13.0+cpu`: ~190 MB, ~750 MB installed) is on PyTorch's own index,
# which is therefore the default here:
#     docker build .                                             # CPU wheel from download.pytorch.org/whl/cpu
#     docker build --build-arg TORCH_INDEX_URL= .                # pip's configured index instead (PyPI:
#                                                                #   the CUDA build, a several-GB image)
#     docker build --build-arg TORCH_INDEX_URL=http://mirror/whl/cpu .   # a mirror of the CPU index
# Where download.pytorch.org cannot be reached (a machine that sees only PyPI), the default build fails
# at this step rather than silently pulling the CUDA build; pass TORCH_INDEX_URL= (or a mirror) then.
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS / PIP_TRUSTED_HOST build arguments reach every pip
# call below, for builds that must use a private package index. More in docs/deploy.md.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
# torch first, pinned exactly (a range would admit a newer release and, from PyPI, a CUDA build).
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY guard ./guard
COPY training ./training
COPY policies.yaml ./policies.yaml
# PyPI's torchvision/torchaudio/torchcodec do not import beside torch 2.13.0 (and break transformers'
# model imports), so they go if a dependency dragged them in. A failed install fails the build; the
# uninstall is the only step allowed to find nothing, and the last line proves the image works.
RUN pip install '.[eval]' \
 && for p in torchvision torchaudio torchcodec; do \
      if pip show --quiet "$p" 2>/dev/null; then pip uninstall -y "$p"; fi; \
    done \
 && rsafe policies validate /app/policies.yaml \
 && python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# The unprivileged user the gateway runs as. The container starts as root only so the entrypoint can
# hand a root-owned log mount (Docker creates a missing ./logs as root) to this user; it then drops to
# it with setpriv before anything else runs. Started with --user, the entrypoint checks instead and
# stops with a message when the log folder is not writable. See scripts/docker-entrypoint.sh.
RUN groupadd --gid 10001 rsafe \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/rsafe --shell /usr/sbin/nologin rsafe \
 && mkdir -p /logs && chown rsafe:rsafe /logs
# The default policies, so a bare `docker run` serves; docker-compose.yml mounts the folder holding your
# policies.yaml over /config (a folder, not the file: editors that save by rename must reach the container).
COPY policies.yaml /config/policies.yaml
COPY scripts/docker-entrypoint.sh /usr/local/bin/rsafe-entrypoint
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["rsafe-entrypoint"]
CMD ["rsafe", "serve", "--host", "0.0.0.0", "--port", "8080", "--policies", "/config/policies.yaml", "--block-log", "/logs/blocks.jsonl"]
