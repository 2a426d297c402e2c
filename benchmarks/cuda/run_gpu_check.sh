#!/usr/bin/env bash
# The prepared GPU check of pyireg's CUDA engine (docs/cuda.md), in two parts that each fit one
# 10-minute device command (the build stays on the machine between them):
#   part 1 (at most about 8 minutes, usually 3-4): the nvcc build (pip install .
#     -Ccmake.define.PYIREG_CUDA=ON), the spill check, then pyireg bench --device cuda (the
#     targets' numbers, first so that nothing cuts them);
#   part 2 (at most about 8 minutes): pytest -m cuda (a skip fails the check), then
#     compute-sanitizer memcheck and initcheck on a small run of every operation (gpu_smoke.py)
#     with torch's caching allocator off (PYTORCH_NO_CUDA_MEMORY_CACHING=1, so an out-of-bounds
#     access inside a cached segment is seen), and a planted out-of-bounds read that memcheck must
#     report. racecheck and synccheck are not run: the engine's kernels use no shared memory and no
#     barriers, so they would check nothing of it (the emulation's TSan build covers the
#     self-tests' barriers). A device compute-sanitizer does not support is reported as such.
# --emulate runs the same Python parts through the emulation on any machine (no GPU, no nvcc):
# the emulated tests, the smoke run, the sanitizer builds of the emulation (sanitize_emu.sh:
# ASan/UBSan and TSan, with their planted bugs), the tiny emulated benchmark, and, where nvcc is
# on the PATH, the nvcc build with its spill check and an import of pyireg._cuda without a GPU.
# Usage: bash benchmarks/cuda/run_gpu_check.sh [--emulate] [--quick] [--part 1|2]
#   (--quick: no sanitizer or nvcc builds; no --part: both parts, about 16 minutes at most)
set -uo pipefail
cd "$(dirname "$0")/../.."
emulate=0; quick=0; part=all
while [[ $# -gt 0 ]]; do
  case "$1" in
    --emulate) emulate=1 ;;
    --quick) quick=1 ;;
    --part) shift; part="${1:-}"; [[ "$part" == 1 || "$part" == 2 ]] || { echo "--part: expected 1 or 2"; exit 2; } ;;
    *) echo "usage: $0 [--emulate] [--quick] [--part 1|2]"; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python}"
fail=0
step() {  # name, timeout seconds, command...
  local name="$1" limit="$2"; shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  if [[ $rc -ne 0 ]]; then echo "FAIL $name (exit $rc, $((SECONDS - t0)) s)"; fail=1; else echo "ok   $name ($((SECONDS - t0)) s)"; fi
  return $rc
}
tmp="$(mktemp -d)"
export OMP_WAIT_POLICY=passive

if [[ $emulate -eq 1 ]]; then
  step "emulated CUDA tests" 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_emu.py tests/test_cuda_torch.py \
       tests/test_cuda_build.py
  step "smoke run on the emulated device" 120 "$PY" benchmarks/cuda/gpu_smoke.py --emulate
  if [[ $quick -eq 0 ]]; then
    step "sanitizer builds of the emulation" 400 bash benchmarks/cuda/sanitize_emu.sh "$tmp/san"
  fi
  step "emulated benchmark (plumbing only)" 120 "$PY" -m pyireg.bench_cuda --emulate
  if [[ $quick -eq 0 ]] && command -v nvcc >/dev/null; then   # nvcc without a GPU: build, spills, import
    step "nvcc build, spill check, import without a device" 400 "$PY" benchmarks/cuda/check_spills.py --import-check
  fi
  exit $fail
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if [[ $part != 2 ]]; then
  step "nvcc build" 300 "$PY" -m pip install -q --no-deps --no-build-isolation . -Ccmake.define.PYIREG_CUDA=ON || exit 1
  step "spill check" 180 "$PY" benchmarks/cuda/check_spills.py
fi
step "CUDA available" 60 "$PY" -c "import pyireg.cuda as c, sys; print(c.status()); sys.exit(0 if c.is_available() else 1)" \
  || exit 1
if [[ $part != 2 ]]; then
  step "pyireg bench --device cuda" 240 pyireg bench --device cuda
fi
[[ $part == 1 ]] && exit $fail

echo "== pytest -m cuda"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -rs -m cuda tests >"$tmp/pytest.log" 2>&1
rc=$?
tail -5 "$tmp/pytest.log"
if [[ $rc -ne 0 ]] || grep -q -i "skipped" "$tmp/pytest.log"; then
  echo "FAIL pytest -m cuda (exit $rc, or a test skipped: on a GPU machine every cuda test must run)"; fail=1
else
  echo "ok   pytest -m cuda"
fi
sanitize() {  # tool, log, args...
  local tool="$1" log="$2"; shift 2
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" "$@" >"$log" 2>&1
}
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck initcheck; do
    echo "== compute-sanitizer $tool"
    sanitize "$tool" "$tmp/$tool.log" benchmarks/cuda/gpu_smoke.py
    rc=$?
    tail -3 "$tmp/$tool.log"
    if grep -q -i "device not supported\|not supported on this" "$tmp/$tool.log"; then
      echo "UNSUPPORTED compute-sanitizer $tool: this device (nothing of pyireg checked)"
    elif [[ $rc -ne 0 ]]; then
      echo "FAIL compute-sanitizer $tool (exit $rc)"; fail=1
    else
      echo "ok   compute-sanitizer $tool"
    fi
  done
  echo "== planted out-of-bounds read (memcheck must report it)"
  sanitize memcheck "$tmp/oob.log" benchmarks/cuda/gpu_smoke.py --planted-oob
  rc=$?
  if [[ $rc -eq 9 ]] && grep -q "Invalid __global__ read" "$tmp/oob.log"; then
    echo "ok   planted read reported: $(grep -m1 'Invalid __global__ read' "$tmp/oob.log")"
    grep -m1 -E "selftest\.cuh:[0-9]+" "$tmp/oob.log"
  elif grep -q -i "device not supported\|not supported on this" "$tmp/oob.log"; then
    echo "UNSUPPORTED planted read: compute-sanitizer does not support this device"
  else
    echo "FAIL planted out-of-bounds read not reported (exit $rc)"; tail -20 "$tmp/oob.log"; fail=1
  fi
else
  echo "FAIL compute-sanitizer not found (it ships with the CUDA toolkit)"; fail=1
fi
exit $fail
