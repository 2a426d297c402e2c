#!/usr/bin/env bash
# The prepared GPU check of pyireg's CUDA engine (docs/cuda.md), within about 9 minutes on one GPU:
#   1. the nvcc build (pip install . -Ccmake.define.PYIREG_CUDA=ON) and the spill check;
#   2. compute-sanitizer memcheck, racecheck, synccheck and initcheck on a small complete run
#      (gpu_smoke.py), and a planted out-of-bounds read that memcheck must report;
#   3. pytest -m cuda (the tests that need a GPU);
#   4. pyireg bench --device cuda, whose Markdown table is printed last.
# --emulate runs the same Python parts through the emulation on any machine (no GPU, no nvcc):
# the emulated tests, the smoke run, the sanitizer builds of the emulation (sanitize_emu.sh:
# ASan/UBSan and TSan, with their planted bugs), the tiny emulated benchmark, and, where nvcc is
# on the PATH, the nvcc build with its spill check and an import of pyireg._cuda without a GPU.
# Usage: bash benchmarks/cuda/run_gpu_check.sh [--emulate] [--quick]   (--quick: no sanitizer or nvcc builds)
set -uo pipefail
cd "$(dirname "$0")/../.."
emulate=0; quick=0
for a in "$@"; do
  case "$a" in
    --emulate) emulate=1 ;;
    --quick) quick=1 ;;
    *) echo "usage: $0 [--emulate] [--quick]"; exit 2 ;;
  esac
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
step "nvcc build" 300 "$PY" -m pip install -q --no-deps --no-build-isolation . -Ccmake.define.PYIREG_CUDA=ON || exit 1
step "spill check" 180 "$PY" benchmarks/cuda/check_spills.py
step "CUDA available" 60 "$PY" -c "import pyireg.cuda as c, sys; print(c.status()); sys.exit(0 if c.is_available() else 1)" \
  || exit 1
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck initcheck; do
    step "compute-sanitizer $tool" 120 compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" benchmarks/cuda/gpu_smoke.py
  done
  echo "== planted out-of-bounds read (memcheck must report it)"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" benchmarks/cuda/gpu_smoke.py --planted-oob >"$tmp/oob.log" 2>&1
  rc=$?
  if [[ $rc -eq 9 ]] && grep -q "Invalid __global__ read" "$tmp/oob.log"; then
    echo "ok   planted read reported: $(grep -m1 'Invalid __global__ read' "$tmp/oob.log")"
    grep -m1 -E "selftest\.cuh:[0-9]+" "$tmp/oob.log"
  else
    echo "FAIL planted out-of-bounds read not reported (exit $rc)"; tail -20 "$tmp/oob.log"; fail=1
  fi
else
  echo "FAIL compute-sanitizer not found (it ships with the CUDA toolkit)"; fail=1
fi
step "pytest -m cuda" 180 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests
step "pyireg bench --device cuda" 240 pyireg bench --device cuda
exit $fail
