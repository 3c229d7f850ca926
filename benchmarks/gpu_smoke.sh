#!/usr/bin/env bash
# GPU smoke check of the RSafe guard's production path: vLLM on CUDA serving a small
# random-init model (taught one verdict), the `vllm` engine of guard.rsafe against it,
# 64 concurrent checks. Not part of CI (no GPU there); run it whenever a CUDA machine
# is at hand and paste its output into docs/benchmarks.md with the card and the date.
#
# Needs:
#   - an NVIDIA GPU (nvidia-smi) and a Python with a CUDA build of vLLM: VLLM_PYTHON
#     (default: python3). Nothing is downloaded: the model is built on the spot.
#   - a Python with this repo's dependencies (httpx, pydantic, PyYAML, torch, transformers,
#     tokenizers): PYTHON (default: .venv/bin/python if present, else python3). It may be
#     the same interpreter as VLLM_PYTHON.
# Usage: bash benchmarks/gpu_smoke.sh            (exit status 0 = all checks passed)
# Env:   CONCURRENCY (64), MAX_TOKENS (64), STARTUP_TIMEOUT (600 s), KEEP_DIR=1 keeps the work dir.
#        REHEARSE_ON_CPU=1 runs the same steps on the CPU build (VLLM_PYTHON=.venv-vllm/bin/python) to
#        check the script itself on a machine without a GPU; its numbers are not GPU numbers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
VLLM_PYTHON="${VLLM_PYTHON:-python3}"
CONCURRENCY="${CONCURRENCY:-64}"
MAX_TOKENS="${MAX_TOKENS:-64}"
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-600}"
WORK="$(mktemp -d -t rsafe-gpu-smoke-XXXXXX)"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  [[ "${KEEP_DIR:-0}" == "1" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "== rsafe gpu smoke $(date -u +%FT%TZ)"
if [[ "${REHEARSE_ON_CPU:-0}" == "1" ]]; then
  echo "REHEARSAL on CPU: checks the script, not the GPU"
  SERVER_ARGS=(--dtype float32 --gpu-memory-utilization 0.3 --enforce-eager)
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
  "$VLLM_PYTHON" -c 'import vllm; print(f"vllm {vllm.__version__} (CPU)")'
else
  SERVER_ARGS=(--dtype bfloat16 --gpu-memory-utilization 0.5)
  if ! command -v nvidia-smi >/dev/null; then
    echo "FAIL: nvidia-smi not found: this script needs a CUDA machine" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$VLLM_PYTHON" - <<'PY' || { echo "FAIL: no CUDA build of vLLM in $VLLM_PYTHON (set VLLM_PYTHON)" >&2; exit 2; }
import torch, vllm
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"vllm {vllm.__version__}, torch {torch.__version__}, cuda {torch.version.cuda}, device {torch.cuda.get_device_name(0)}")
PY
fi

echo "== building a tiny Qwen2 guard model in $WORK/model (random init, taught one verdict)"
ANSWER="$("$PYTHON" -c 'from guard.rsafe.prompt import render_answer; print(render_answer("unsafe", ["S1"], "It asks for violence."), end="")')"
"$PYTHON" -m training.demo.tiny "$WORK/model" --answer "$ANSWER"

PORT="$("$PYTHON" -c 'from tests.servers import free_port; print(free_port())')"
URL="http://127.0.0.1:$PORT"
echo "== starting vLLM on $URL; log: $WORK/vllm.log"
setsid "$VLLM_PYTHON" -m vllm.entrypoints.openai.api_server \
  --model "$WORK/model" --served-model-name guard \
  --host 127.0.0.1 --port "$PORT" \
  --max-model-len 4096 "${SERVER_ARGS[@]}" \
  >"$WORK/vllm.log" 2>&1 &
SERVER_PID=$!
started=$(date +%s)
until curl -fsS "$URL/health" >/dev/null 2>&1; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "FAIL: vLLM exited during start-up:" >&2; tail -50 "$WORK/vllm.log" >&2; exit 1
  fi
  if (( $(date +%s) - started > STARTUP_TIMEOUT )); then
    echo "FAIL: vLLM not healthy after ${STARTUP_TIMEOUT}s:" >&2; tail -50 "$WORK/vllm.log" >&2; exit 1
  fi
  sleep 2
done
echo "vLLM healthy after $(( $(date +%s) - started ))s"

echo "== checks through guard.rsafe (vllm engine): one verdict, then overhead + ${CONCURRENCY} concurrent"
"$PYTHON" - "$URL" <<'PY'
import asyncio, sys
from guard.policies import Direction, Policy
from guard.rsafe.backend import build
from guard.verdict import CheckRequest, Turn

pols = (Policy(id="S1", name="Violent crimes", description="Helping with violence."),
        Policy(id="S2", name="Non-violent crimes", description="Fraud, theft."))

async def main() -> None:
    guard = build({"url": sys.argv[1], "model": "guard", "max_tokens": 48, "timeout_s": 60}, None)
    try:
        verdict = await guard.check(CheckRequest(Direction.INPUT, (Turn("user", "how do I hurt someone?"),), pols))
    finally:
        await guard.aclose()
    print(f"verdict: violated={verdict.violated} reasoning={verdict.reasoning!r} latency_ms={verdict.latency_ms:.1f}")
    assert verdict.violated == ["S1"], "the taught verdict did not come back through vLLM on CUDA"

asyncio.run(main())
PY
"$PYTHON" benchmarks/rsafe_overhead.py --checks 500 --url "$URL" --model guard \
  --concurrency "$CONCURRENCY" --max-tokens "$MAX_TOKENS"
echo "== gpu smoke OK"
