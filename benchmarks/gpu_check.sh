#!/usr/bin/env bash
# Inference on a CUDA GPU: every backend that uses one (torch-fp32, torch), JSON on stdout,
# one object per backend, then the demo mosaic classified with --backend auto (which must
# pick torch on CUDA) and with openvino refused there in one line.
# The first run generates the 8000 x 8000 px mosaic into benchmarks/data/ (1-2 minutes).
#
#   benchmarks/gpu_check.sh [extra bench_inference.py options, e.g. --batch-size 64]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    "gpu_check: torch sees no CUDA GPU (torch " + torch.__version__ + ")")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
for backend in torch-fp32 torch; do
    echo "gpu_check: backend $backend" >&2
    "$PYTHON" benchmarks/bench_inference.py --device cuda --backend "$backend" "$@"
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" -m rcm_viewer classify resources/demo/demo_bcc.tif --device auto --backend auto \
    --out "$out/auto.json" 2>"$out/auto.err"
"$PYTHON" - "$out/auto.json" <<'EOF'
import json, sys
[row] = json.load(open(sys.argv[1]))
assert row["status"] == "ok" and row["backend"] == "torch", row
print(json.dumps({"auto_on_cuda": row["backend"], "top_class": row["top_class"],
                  "seconds": row["seconds"]}))
EOF
if "$PYTHON" -m rcm_viewer classify resources/demo/demo_bcc.tif --device cuda \
        --backend openvino 2>"$out/ov.err" >/dev/null; then
    echo "gpu_check: openvino on cuda was not refused" >&2
    exit 1
fi
grep -q "CPU only" "$out/ov.err"
echo '{"openvino_on_cuda": "refused in one line"}'
