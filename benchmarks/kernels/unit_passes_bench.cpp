// Kernel sandbox: the per-unit passes of a training step (the second layer of the forward, the
// dV / dZ backward of a network's units) for one chunk of 192 units of one network (k = 10,
// batch 104 padded), on one thread, thread CPU time, alternating rounds. Variant 0 is the
// current csrc/cpu/layers.h (units_backward, a few units at a time); variant 1 (v1_unit_passes.inc) computes the
// second layer and the dZ pass as small products on the register-blocked GEMM and dV two units
// at a time. Usage: unit_passes_bench [reps] [rounds] [k].
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define PYIREG_ISA avx2
#include "cpu/gemm.h"
#include "cpu/layers.h"

namespace pyireg {
namespace avx2 {
namespace v1 {
#include "v1_unit_passes.inc"
}  // namespace v1
}  // namespace avx2
}  // namespace pyireg

using namespace pyireg::avx2;
using T = float;

static double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
  const int64_t H = 192, k = argc > 3 ? std::atoi(argv[3]) : 10, Bp = 104;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 2000, rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  std::mt19937 g(0);
  std::normal_distribution<float> n01;
  std::vector<T> AT(H * Bp), G(k * Bp), V(H * k), L(k * Bp), dZ(H * Bp), dV(H * k), dZ0(H * Bp), dV0(H * k), L0(k * Bp);
  for (auto& x : AT) x = std::max(0.f, n01(g));
  for (auto& x : G) x = n01(g);
  for (auto& x : V) x = n01(g);
  double best[4] = {1e9, 1e9, 1e9, 1e9};
  for (int r = 0; r < rounds; ++r)
    for (int v = 0; v < 4; ++v) {
      const double t0 = thread_seconds();
      for (int i = 0; i < reps; ++i) {
        if (v == 0) second_layer(AT.data(), H, V.data(), k, Bp, L0.data());
        if (v == 1) v1::second_layer(AT.data(), H, V.data(), k, Bp, L.data());
        if (v == 2)
          for (int64_t h = 0; h < H; h += kBackwardUnits)
            units_backward(AT.data() + h * Bp, G.data(), V.data() + h * k, std::min(kBackwardUnits, H - h), k, Bp,
                           dZ0.data() + h * Bp, dV0.data() + h * k, true);
        if (v == 3) v1::units_backward(AT.data(), G.data(), V.data(), H, k, Bp, dZ.data(), dV.data(), true);
      }
      best[v] = std::min(best[v], thread_seconds() - t0);
    }
  const double flops = 2.0 * H * k * Bp * reps;  // per pass (the backward does two)
  std::printf("k = %lld: second layer   v0 %6.1f  v1 %6.1f GFLOP/s\n", (long long)k, flops / best[0] / 1e9,
              flops / best[1] / 1e9);
  std::printf("k = %lld: unit backward  v0 %6.1f  v1 %6.1f GFLOP/s\n", (long long)k, 2 * flops / best[2] / 1e9,
              2 * flops / best[3] / 1e9);
  // v1's dV sums run in round 2's order, not the dv tree of layers.h, and its second layer sums
  // in another order: only dZ must agree
  const bool same_l = std::equal(L.begin(), L.end(), L0.begin());
  const bool same = std::equal(dZ.begin(), dZ.end(), dZ0.begin());
  std::printf("bit-identical: dZ %s, second layer %s\n", same ? "yes" : "NO", same_l ? "yes" : "no");
  return same ? 0 : 1;
}
