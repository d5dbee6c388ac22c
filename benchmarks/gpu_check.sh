#!/usr/bin/env bash
# Inference benchmark on a CUDA GPU: the same script, --device cuda, JSON on stdout.
# The first run generates the 8000 x 8000 px mosaic into benchmarks/data/ (1-2 minutes).
#
#   benchmarks/gpu_check.sh [extra bench_inference.py options, e.g. --batch-size 64]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    "gpu_check: torch sees no CUDA GPU (torch " + torch.__version__ + ")")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
exec "$PYTHON" benchmarks/bench_inference.py --device cuda "$@"
