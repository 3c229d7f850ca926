# The gateway image: CPU only (the embedded guard runs on CPU; the reasoning guard is a separate
# vLLM service, see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
# torch first, pinned exactly (a range would pull a multi-GB CUDA build into a CPU image).
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY guard ./guard
COPY training ./training
COPY policies.yaml ./policies.yaml
RUN pip install --no-cache-dir '.[eval]' \
 && pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
RUN useradd --system --uid 10001 rsafe && mkdir -p /logs && chown rsafe /logs
USER rsafe
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["rsafe", "serve", "--host", "0.0.0.0", "--port", "8080", "--policies", "/config/policies.yaml", "--block-log", "/logs/blocks.jsonl"]
