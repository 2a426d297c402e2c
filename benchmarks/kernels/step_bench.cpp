// Kernel sandbox: where the time of a training step goes, on one thread, in thread CPU time.
// Times the engine's operations on the dense sweep (every width 1..1024, d = 100, k = 10,
// batch 100) and derives the phases from their differences. Build: see README.md beside this file.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cpu/cpu_engine.h"

using namespace pyireg;

static double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoi(argv[1]) : 1024, d = 100, k = 10, B = 100;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  set_num_threads(1);
  std::vector<int64_t> off(N + 1, 0);
  for (int64_t n = 0; n < N; ++n) off[n + 1] = off[n] + n + 1;
  const int64_t S = off[N];
  Engine<float> e(off.data(), N, d, k, Activation::relu, Loss::cross_entropy);
  std::mt19937 g(0);
  std::normal_distribution<float> n01;
  std::vector<float> U(S * d), V(S * k), X(B * d), bU(S * d, 0.f), bV(S * k, 0.f), gU(S * d), gV(S * k);
  std::vector<float> out(N * B * k), dOut(N * B * k), gX(B * d);
  for (auto& x : U) x = 0.1f * n01(g);
  for (auto& x : V) x = 0.1f * n01(g);
  for (auto& x : X) x = n01(g);
  for (auto& x : dOut) x = 0.01f * n01(g);
  std::vector<int32_t> y(B);
  for (int64_t b = 0; b < B; ++b) y[b] = static_cast<int32_t>(b % k);
  std::vector<float> lr(N, 0.01f), mom(N, 0.9f), wd(N, 0.f);
  std::vector<double> loss(N);
  Targets<float> t;
  t.labels = y.data();
  UpdateRule<float> r;
  r.state_U = bU.data();
  r.state_V = bV.data();
  r.lr = lr.data();
  r.momentum = mom.data();
  r.weight_decay = wd.data();
  const char* names[] = {"forward", "backward (dU, dV)", "backward (dU, dV, dX)", "loss_and_grad",
                         "step",    "apply_update"};
  double best[6];
  std::fill(best, best + 6, 1e9);
  for (int rep = 0; rep < rounds; ++rep) {
    for (int op = 0; op < 6; ++op) {
      const double t0 = thread_seconds();
      switch (op) {
        case 0: e.forward(U.data(), V.data(), X.data(), B, out.data()); break;
        case 1: e.backward(U.data(), V.data(), X.data(), B, dOut.data(), gU.data(), gV.data(), nullptr); break;
        case 2: e.backward(U.data(), V.data(), X.data(), B, dOut.data(), gU.data(), gV.data(), gX.data()); break;
        case 3: e.loss_and_grad(U.data(), V.data(), X.data(), B, t, loss.data(), gU.data(), gV.data()); break;
        case 4: e.step(U.data(), V.data(), X.data(), B, t, r, loss.data()); break;
        case 5: e.apply_update(U.data(), V.data(), gU.data(), gV.data(), r); break;
      }
      best[op] = std::min(best[op], thread_seconds() - t0);
    }
  }
  const double train_flops = (4.0 * d + 6.0 * k) * S * B, fwd_flops = 2.0 * (d + k) * S * B;
  std::printf("S = %lld units, batch %lld, 1 thread, thread CPU time, best of %d\n", (long long)S, (long long)B,
              rounds);
  for (int op = 0; op < 6; ++op) std::printf("%-24s %8.1f ms\n", names[op], 1e3 * best[op]);
  std::printf("forward: %.1f GFLOP/s useful; step: %.1f GFLOP/s useful\n", fwd_flops / best[0] / 1e9,
              train_flops / best[4] / 1e9);
  std::printf("step - loss_and_grad (the update, fused): %.1f ms; apply_update alone: %.1f ms\n",
              1e3 * (best[4] - best[3]), 1e3 * best[5]);
  return 0;
}
