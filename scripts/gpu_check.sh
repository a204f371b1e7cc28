#!/usr/bin/env bash
# The GPU path, run for real on a machine with one CUDA GPU (by hand; CI has no GPU). See docs/gpu.md.
#
#   scripts/gpu_check.sh [--wheels DIR] [--part strategies,mfu,finetune|all] [--gguf FILE] [--out DIR]
#
# Installs the project with its `gpu` extra (CUDA torch, deepspeed, vllm), or, on a machine without
# network access, the wheels in DIR on top of the machine's own torch/transformers (--wheels DIR), then
# runs scripts/gpu_check.py with the remaining arguments. Exit code 1 when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ "${1:-}" == "--wheels" ]]; then
  site=${NEXUS_GPU_SITE:-/tmp/nexus-gpu-site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$2"/*.whl
  export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}"
  shift 2
else
  "$PY" -m pip install -q -e '.[gpu]'
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" scripts/gpu_check.py "$@"
