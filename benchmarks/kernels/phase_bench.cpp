// Kernel sandbox: the phases of one fused training step (dense sweep: every width 1..1024,
// d = 100, k = 10, batch 100), on one thread, in thread CPU time. Calls the building blocks of
// csrc/cpu/kernels.h in the order loss_pass does and times each. Build: see README.md.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#ifndef PYIREG_ISA  // -DPYIREG_ISA=avx512 -DPYIREG_VEC_BYTES=64 for the AVX-512 kernels
#define PYIREG_ISA avx2
#endif
#include "cpu/kernels.h"

using namespace pyireg;
using namespace pyireg::PYIREG_ISA;
using T = float;

namespace pyireg {
int num_threads() { return 1; }  // the harness runs one thread; dispatch.cpp is not linked
}  // namespace pyireg

static double now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoi(argv[1]) : 1024, d = 100, k = 10, B = 100;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  std::vector<int64_t> off(N + 1, 0);
  for (int64_t n = 0; n < N; ++n) off[n + 1] = off[n] + n + 1;
  const int64_t S = off[N];
  const int64_t group_units = argc > 3 ? std::atoi(argv[3]) : 512;
  Plan p = make_plan(make_layout(off.data(), N, d, k), 192, group_units);
  Ctx cx{&p, Activation::relu, 1};
  // the forward's prefetch of the next chunk: as the engine decides it (L2 >= 1 MiB), or argv[4]
  cx.ahead = argc > 4 ? std::atoi(argv[4]) != 0 : read_l2_cache_bytes() >= kAheadMinL2Bytes;
  std::mt19937 g(0);
  std::normal_distribution<float> n01;
  std::vector<T> U(S * d), V(S * k), X(B * d), bU(S * d, 0.f), bV(S * k, 0.f);
  for (auto& x : U) x = 0.1f * n01(g);
  for (auto& x : V) x = 0.1f * n01(g);
  for (auto& x : X) x = n01(g);
  std::vector<int32_t> y(B);
  for (int64_t b = 0; b < B; ++b) y[b] = static_cast<int32_t>(b % k);
  std::vector<T> lr(N, 0.01f), mom(N, 0.9f), wd(N, 0.f);
  std::vector<double> loss(N);
  Targets<T> t;
  t.labels = y.data();
  UpdateRule<T> r;
  r.state_U = bU.data();
  r.state_V = bV.data();
  r.lr = lr.data();
  r.momentum = mom.data();
  r.weight_decay = wd.data();
  MomentumSgdRule<T> rule{r};
  Workspace<T> ws;
  const Pass ps = make_pass<T>(p, B);
  enum { PACK, FWD_GEMM, SECOND, LOSS, BACKWARD, UPDATE_GEMM, NPH };
  const char* names[NPH] = {"pack batch",    "forward GEMM + relu",     "second layer",
                            "reduce + loss", "dV, dZ (units_backward)", "dU GEMM + U, V update"};
  double best[NPH];
  std::fill(best, best + NPH, 1e9);
  for (int s = 0; s < steps; ++s) {
    double tt[NPH] = {0};
    double t0 = now();
    pack_batch(ws, X.data(), B, d, ps.Bp, ps.dp, true);
    reserve_pass(ws, cx, ps, false);
    tt[PACK] += now() - t0;
    for (int64_t gi = 0; gi < p.ngroups(); ++gi) {
      const int64_t c0 = p.group_chunk_ptr[gi], c1 = p.group_chunk_ptr[gi + 1];
      // forward GEMM alone (no outputs), then again with the second layer: the difference
      t0 = now();
      forward_chunks(cx, U.data(), V.data(), ws.XT.data(), ps.Bp, ws.AT.data(), p.chunk_begin[c0], ws.slots.data(),
                     static_cast<T*>(nullptr), static_cast<T*>(nullptr), 0, c0, c1);
      const double fg = now() - t0;
      tt[FWD_GEMM] += fg;
      t0 = now();
      forward_chunks(cx, U.data(), V.data(), ws.XT.data(), ps.Bp, ws.AT.data(), p.chunk_begin[c0], ws.slots.data(),
                     ws.outs.data(), static_cast<T*>(nullptr), 0, c0, c1);
      tt[SECOND] += std::max(0.0, now() - t0 - fg);
      t0 = now();
      for (int64_t n = p.group_net_ptr[gi]; n < p.group_net_ptr[gi + 1]; ++n) {
        T* L = ws.outs.data() + n * k * ps.Bp;
        reduce_outputs(p, n, ps.Bp, ws.slots.data(), L);
        double sum = 0;
        apply_loss(t, 0, k, B, ps.Bp, L, T(1) / B, &sum, static_cast<int64_t*>(nullptr));
      }
      tt[LOSS] += now() - t0;
      // units_backward alone (no dU), then the full backward with the rule: the difference
      t0 = now();
      backward_group(ws, cx, U.data(), V.data(), ps, gi, static_cast<const void*>(nullptr),
                     GradSink<T>{nullptr, nullptr}, false, static_cast<T*>(nullptr),
                     group_activations(ws.AT.data(), p, ps, gi));
      const double ub = now() - t0;
      tt[BACKWARD] += ub;
      t0 = now();
      backward_group(ws, cx, U.data(), V.data(), ps, gi, &rule, GradSink<T>{nullptr, nullptr}, true,
                     static_cast<T*>(nullptr), group_activations(ws.AT.data(), p, ps, gi));
      tt[UPDATE_GEMM] += std::max(0.0, now() - t0 - ub);
    }
    for (int i = 0; i < NPH; ++i) best[i] = std::min(best[i], tt[i]);
  }
  double total = 0;
  for (int i = 0; i < NPH; ++i) total += best[i];
  const double flops[NPH] = {0, 2.0 * S * d * B, 2.0 * S * k * B, 0, 4.0 * S * k * B, 2.0 * S * d * B};
  std::printf("S = %lld units, batch %lld, 1 thread, best of %d steps (thread CPU time)\n", (long long)S, (long long)B,
              steps);
  for (int i = 0; i < NPH; ++i)
    std::printf("%-26s %7.1f ms  %5.1f%%  %6.1f GFLOP/s\n", names[i], 1e3 * best[i], 100 * best[i] / total,
                flops[i] > 0 ? flops[i] / best[i] / 1e9 : 0.0);
  std::printf("%-26s %7.1f ms  (useful %.1f GFLOP/s)\n", "sum", 1e3 * total, (4.0 * d + 6.0 * k) * S * B / total / 1e9);
  return 0;
}
