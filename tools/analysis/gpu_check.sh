#!/usr/bin/env bash
# The GPU checks in one call: the CUDA-only tests and
# the Swin-L -> ResNet-50 benchmark (bf16, batch 128), compiled and eager on
# the same machine. Each stage has its own time limit, so one that hangs
# cannot use up the machine's time; logs and JSON go to $OUT (or ./work_dirs/gpu_check).
#
#   bash tools/analysis/gpu_check.sh            # on the GPU machine
#   BATCH=2 DEVICE=cpu PRECISION=fp32 CONFIG=configs/smoke/scalekd_smoke_synthetic.py \
#     SKIP_TESTS=1 bash tools/analysis/gpu_check.sh   # dry run of the script here
#
# Where the OpenMMLab stack is missing (the GPU image), install the wheels
# prepared by ../shared/tools/gpu-wheels.sh first (carry .whl).

# --help: the text above, not a run.
case ${1:-} in -h|--help) sed -n '1d; /^#/!q; s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
set -uo pipefail
OUT=${OUT:-work_dirs/gpu_check}
mkdir -p "$OUT"
CONFIG=${CONFIG:-configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py}
BATCH=${BATCH:-128}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c 'import importlib as i
print(*(f"{m} {i.import_module(m).__version__}"
        for m in ("torch", "timm", "mmengine", "mmpretrain", "mmcv")))'
  uptime
} 2>&1 | tee "$OUT/env.txt"

bench() {  # name, time limit, extra flags
  local name=$1 limit=$2; shift 2
  echo "== benchmark $name ($*) $(date -u +%T)"
  timeout "$limit" $PY tools/analysis/benchmark.py "$CONFIG" --device "$DEVICE" \
    --precision "$PRECISION" --batch-size "$BATCH" --warmup 3 --iters 10 \
    --json "$OUT/bench_$name.json" "$@" >"$OUT/bench_$name.log" 2>&1
  echo "   rc=$? $(date -u +%T)"
}

bench compiled "${LIMIT_COMPILED:-300}" --compile --channels-last
if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== CUDA tests $(date -u +%T)"
  timeout "${LIMIT_TESTS:-240}" $PY -m pytest -q -p no:cacheprovider -rs \
    tests/test_models/test_distillers/test_fast_paths.py \
    tests/test_engine/test_finite_steps.py::test_fp16_amp_skips_a_transient_overflow_on_cuda \
    tests/test_tools/test_train_test_tools.py::test_amp_picks_the_dtype_of_this_machine \
    tests/test_tools/test_train_test_tools.py::test_amp_compile_training_on_cuda \
    >"$OUT/tests.log" 2>&1
  echo "   rc=$? $(date -u +%T)"; tail -15 "$OUT/tests.log"
fi
bench eager "${LIMIT_EAGER:-120}"
for name in compiled eager; do
  echo "== $name"; tail -32 "$OUT/bench_$name.log"
done
