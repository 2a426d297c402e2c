#!/usr/bin/env bash
# The CUDA emulation under the sanitizers: builds benchmarks/cuda/emu_driver.cpp with the
# emulation, the engine and the self-test kernels (csrc/cuda) twice, with AddressSanitizer +
# UndefinedBehaviorSanitizer and with ThreadSanitizer (fiber-aware: csrc/cuda/emu/emu.cpp, fiber.h), and
# checks four things:
#   1. ASan/UBSan: every self-test and every CUDA engine operation run with no report;
#   2. ASan: the planted one-past-the-end read (selftest oob_read) is reported, by source line;
#   3. TSan: the same with no report (barriers and collectives order the threads; blocks on 2 CPU
#      threads);
#   4. TSan: the planted missing barrier (reverse_no_barrier) is reported as a data race.
# Usage: bash benchmarks/cuda/sanitize_emu.sh [build-dir]   (needs g++ with libasan/libtsan)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
CXX="${CXX:-g++}"
src=(benchmarks/cuda/emu_driver.cpp csrc/cuda/emu/emu.cpp csrc/cuda/emu/runtime.cpp csrc/cuda/emu/blas_emu.cpp
     csrc/cuda/emu/engine_emu.cpp csrc/engine/layout.cpp)
fail=0
check() {  # name, expected exit (0 or non-zero), pattern that must (or must not) appear, command...
  local name="$1" want="$2" pat="$3"; shift 3
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  if [[ "$want" == 0 ]]; then
    if [[ $rc -ne 0 ]] || grep -q "$pat" "$out/$name.log"; then
      echo "FAIL $name (exit $rc)"; tail -20 "$out/$name.log"; fail=1
    else echo "ok   $name"; fi
  else
    if [[ $rc -eq 0 ]] || ! grep -q "$pat" "$out/$name.log"; then
      echo "FAIL $name: expected a report matching '$pat' (exit $rc)"; tail -20 "$out/$name.log"; fail=1
    else echo "ok   $name: $(grep -m1 "$pat" "$out/$name.log")"; grep -m1 -E "selftest.cuh:[0-9]+" "$out/$name.log" | sed 's/^/       /'; fi
  fi
}
echo "building into $out"
$CXX -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Icsrc \
  "${src[@]}" -o "$out/emu_asan" -lpthread || exit 2
$CXX -std=c++17 -O1 -g -fsanitize=thread -Icsrc "${src[@]}" -o "$out/emu_tsan" -lpthread || exit 2
# detect_leaks=0: a kernel that raises leaves its other threads' frames (and the strings on
# them) unfinished, by design; the device allocations are checked by the Python tests
check asan-clean 0 "ERROR: AddressSanitizer\|runtime error" env ASAN_OPTIONS=detect_leaks=0 "$out/emu_asan"
check asan-oob-read 1 "heap-buffer-overflow" env ASAN_OPTIONS=detect_leaks=0 "$out/emu_asan" oob_read
check tsan-clean 0 "WARNING: ThreadSanitizer" env TSAN_OPTIONS=halt_on_error=1 "$out/emu_tsan"
check tsan-missing-barrier 1 "WARNING: ThreadSanitizer: data race" env TSAN_OPTIONS=halt_on_error=1 "$out/emu_tsan" race
exit $fail
