#!/usr/bin/env bash
# GPU check of issue 13 in one go (about 5 minutes on one H100 / H200; nothing is downloaded):
# the CUDA-marked tests of the Triton kernels, then `hyperet bench --device cuda --json`.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]        # from the repository root
#
# Needs a python3 that holds a CUDA build of torch, triton, pytest, hypothesis, numpy, click,
# rich, safetensors and mpmath (the lent device machines' image has them all); installs hyperet
# into it editable, without dependencies or network. Writes to OUTDIR (default: $OUT, else
# ./gpu-check): env.txt (card, driver, versions), cuda-tests.log, bench-cuda.json (the rows),
# bench-cuda.log (the table). Exit status: non-zero if the tests or the bench failed.
# BENCH_ARGS adds options to the bench (e.g. BENCH_ARGS=--quick for a smoke run).
set -uo pipefail
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$py" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    || { echo "gpu_check: could not install hyperet into $py" >&2; exit 1; }
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    "$py" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
torch.cuda.get_device_name())"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

start=$SECONDS
timeout 240 "$py" -m pytest -m cuda -p no:cacheprovider -q -rfE tests/ops/test_ops_triton.py \
    2>&1 | tee "$out/cuda-tests.log"
tests_rc=${PIPESTATUS[0]}
echo "CUDA tests: exit $tests_rc after $((SECONDS - start)) s"

start=$SECONDS
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
timeout 300 "$py" -m hyperet.cli bench --device cuda --json ${BENCH_ARGS:-} \
    >"$out/bench-cuda.json" 2>"$out/bench-cuda.log"
bench_rc=$?
cat "$out/bench-cuda.log"
echo "bench: exit $bench_rc after $((SECONDS - start)) s (rows in $out/bench-cuda.json)"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
