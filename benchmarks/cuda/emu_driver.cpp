// A stand-alone driver of the CUDA emulation for the sanitizer builds (sanitize_emu.sh): runs
// the self-test kernels under each thread order and checks their results, then the planted bug
// named on the command line, if any ("oob_read": AddressSanitizer must report it; "race": the
// missing barrier, which ThreadSanitizer must report). Exit status 0 when every check passes.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/emu/emu.h"
#include "cuda/selftest.h"

using pyireg::run_selftest;
namespace emu = pyireg::emu;

static int failures = 0;
static void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what);
    ++failures;
  }
}
static bool raises(const std::string& name, const std::vector<float>& in, int t, int b, const char* needle) {
  try {
    run_selftest(name, in, t, b);
  } catch (const std::exception& e) {
    const bool ok = std::string(e.what()).find(needle) != std::string::npos;
    if (!ok) std::printf("unexpected message: %s\n", e.what());
    return ok;
  }
  return false;
}

int main(int argc, char** argv) {
  const std::string planted = argc > 1 ? argv[1] : "";
  emu::set_threads(2);
  std::vector<float> in(256 * 4);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 37) % 101) - 50.0f;
  for (int s = 0; s < 3; ++s) {
    emu::set_schedule(static_cast<emu::Schedule>(s), 7);
    const auto r = run_selftest("reverse", in, 256, 4);
    bool ok = true;
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 256; ++t) ok &= r[b * 256 + t] == in[b * 256 + 255 - t];
    expect(ok, "reverse with a barrier");
    const auto w = run_selftest("warp_sum", in, 48, 1);
    double s0 = 0, s1 = 0;
    for (int t = 0; t < 32; ++t) s0 += in[t];
    for (int t = 32; t < 48; ++t) s1 += in[t];
    expect(w[0] == s0 && w[1] == s1, "warp_sum of a full and a partial warp");
    const auto bs = run_selftest("block_sum", in, 256, 4);
    double t0 = 0;
    for (int t = 0; t < 256; ++t) t0 += in[t];
    expect(bs[0] == t0, "block_sum");
    expect(raises("early_return", in, 64, 1, "barrier divergence"), "early return raises");
    expect(raises("warp_sum_full_mask", in, 48, 1, "not the live lanes"), "full mask in a partial warp raises");
    expect(raises("deadlock", in, 64, 1, "deadlock"), "deadlock raises");
    expect(raises("big_shared", in, 32, 1, "shared memory"), "too much shared memory raises");
    expect(raises("reverse", std::vector<float>(2048), 2048, 1, "threads per block"), "2048 threads raise");
  }
  emu::set_schedule(emu::Schedule::forward, 0);
  if (planted == "oob_read") {
    std::vector<float> small(100, 1.0f);
    run_selftest("oob_read", small, 25, 4);  // AddressSanitizer reports the read of in[100]
  }
  if (planted == "race") run_selftest("reverse_no_barrier", in, 256, 1);  // ThreadSanitizer reports it
  std::printf("%s: %d failures, %llu launches\n", failures ? "FAILED" : "ok", failures,
              static_cast<unsigned long long>(emu::launches()));
  return failures ? 1 : 0;
}
