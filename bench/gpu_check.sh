#!/usr/bin/env bash
# One short GPU check: bench/worker_throughput.py on CUDA (mixed4c and all 12 layers), images/s printed.
#   UNITSCOPE_IMAGES=/path/to/imagenet-sample UNITSCOPE_WEIGHTS=/path/to/bvlc_googlenet bench/gpu_check.sh
# Optional: LIMIT (images, default 4096), BATCH (default: the worker's, 256 on a GPU), WORKERS
# (decoding processes, default: CPUs), PYTHON (default .venv/bin/python, else python3); extra
# arguments go to the bench. Writes nothing outside the repository (the bench keeps its results in
# memory; --cli would add a temporary DB under $TMPDIR). About 2-3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${UNITSCOPE_IMAGES:?set UNITSCOPE_IMAGES to an ImageFolder, e.g. .../shared/data/imagenet-sample}"
: "${UNITSCOPE_WEIGHTS:?set UNITSCOPE_WEIGHTS to the BVLC weights folder, e.g. .../shared/models/bvlc_googlenet}"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the worker package, installed or not
exec "$PY" bench/worker_throughput.py --device cuda --images "$UNITSCOPE_IMAGES" --weights "$UNITSCOPE_WEIGHTS" \
    --limit "${LIMIT:-4096}" ${BATCH:+--batch-size "$BATCH"} --workers "${WORKERS:-$(nproc)}" --warmup 2 "$@"
