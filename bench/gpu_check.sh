#!/usr/bin/env bash
# The GPU check: images/s of the product path with --decode pil and --decode gpu, for mixed4c and for
# all 12 layers (bench/worker_throughput.py), the GPU's utilisation sampled by nvidia-smi meanwhile,
# then the numeric checks (bench/device_check.py): the PIL path on the GPU against the CPU, and gpu
# decode against pil within the decode tolerance, then the interventions' cost (bench/intervention_cost.py:
# feature visualisation and ablation), and the write phase on the machine's disk (bench/make_scale_db.py --write-only:
# all 12 layers, beside the raw-array limit), to see whether storage keeps up with the GPU's images/s. Exit 1 when
# a check fails. About 6-8 minutes on an H200.
#   UNITSCOPE_IMAGES=/path/to/imagenet-sample UNITSCOPE_WEIGHTS=/path/to/bvlc_googlenet bench/gpu_check.sh
# DEVICE=cpu runs the same steps on the CPU, small (no utilisation, no cpu-vs-device check): a dry run.
# Optional: LIMIT (images per pass, default 6308: the shared sample; 32 with DEVICE=cpu), CHECK_LIMIT
# (images of the numeric checks, default 512; 32 with DEVICE=cpu), WRITE_IMAGES (of the write phase, default
# 20000; 2000 with DEVICE=cpu), REPEATS (default 3), BATCH (default:
# the worker's, 256 on a GPU), WORKERS (loader processes, default: CPUs), PYTHON (default .venv/bin/python,
# else python3). Writes nothing outside the repository but temporary files.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${UNITSCOPE_IMAGES:?set UNITSCOPE_IMAGES to an ImageFolder, e.g. .../shared/data/imagenet-sample}"
: "${UNITSCOPE_WEIGHTS:?set UNITSCOPE_WEIGHTS to the BVLC weights folder, e.g. .../shared/models/bvlc_googlenet}"
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then small=32 repeats=1 write=2000; else small="" repeats=3 write=20000; fi
LIMIT=${LIMIT:-${small:-6308}}
CHECK_LIMIT=${CHECK_LIMIT:-${small:-512}}
REPEATS=${REPEATS:-$repeats}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the worker package, installed or not
sampling=false
if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    sampling=true
fi
echo "device $DEVICE, $(nproc) CPUs, $LIMIT images per pass, $REPEATS rounds"

util_file=$(mktemp)
trap 'rm -f "$util_file"' EXIT
# Utilisation over the whole bench process (model load, page-cache warm-up and warm-up batches
# included, which lowers the mean); "busy" leaves out the idle samples before the first batch.
report_util() {
    awk '{ n++; s += $1; if ($1 > m) m = $1; if ($1 > 0) { b++; bs += $1 } }
         END { if (n) printf "GPU utilisation: mean %.0f%%, busy mean %.0f%% (%d of %d samples > 0), max %d%%\n",
               s / n, b ? bs / b : 0, b, n, m }' "$util_file"
}

status=0
for decode in pil gpu; do
    for layers in mixed4c all; do
        echo
        echo "== --decode $decode, layers $layers"
        sampler=""
        if $sampling; then
            nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$util_file" &
            sampler=$!
        fi
        "$PY" bench/worker_throughput.py --device "$DEVICE" --images "$UNITSCOPE_IMAGES" --weights "$UNITSCOPE_WEIGHTS" \
            --limit "$LIMIT" ${BATCH:+--batch-size "$BATCH"} --workers "${WORKERS:-$(nproc)}" --warmup 2 \
            --repeats "$REPEATS" --skip-baseline --decode "$decode" --layers "$layers" || status=1
        if [ -n "$sampler" ]; then
            kill "$sampler" && wait "$sampler" 2>/dev/null || true
            report_util
        fi
    done
done

echo
echo "== numeric checks"
"$PY" bench/device_check.py --device "$DEVICE" --images "$UNITSCOPE_IMAGES" --weights "$UNITSCOPE_WEIGHTS" \
    --limit "$CHECK_LIMIT" ${BATCH:+--batch-size "$BATCH"} --workers "${WORKERS:-$(nproc)}" || status=1
echo
echo "== interventions: feature visualisation and ablation (bench/intervention_cost.py)"
"$PY" bench/intervention_cost.py --device "$DEVICE" --images "$UNITSCOPE_IMAGES" --weights "$UNITSCOPE_WEIGHTS" \
    ${small:+--units 2 --steps 8 --limit 32 --groups 2} || status=1
echo
echo "== the write phase: all 12 layers stored as the worker stores them, beside the disk's raw-array limit"
write_dir=$(mktemp -d)
"$PY" bench/make_scale_db.py --write-only --images "${WRITE_IMAGES:-$write}" \
    --db "$write_dir/write.duckdb" | grep -v '^  write' || status=1
rm -rf "$write_dir"
echo
if [ "$status" -eq 0 ]; then echo "gpu_check: every check passed"; else echo "gpu_check: a check FAILED"; fi
exit "$status"
