// A stand-alone driver of the CUDA emulation for the sanitizer builds (sanitize_emu.sh): runs
// the self-test kernels under each thread order and checks their results, every operation of the
// CUDA engine once on exactly sized device buffers (for the sanitizers to watch), then the planted bug
// named on the command line, if any ("oob_read": AddressSanitizer must report it; "race": the
// missing barrier, which ThreadSanitizer must report). Exit status 0 when every check passes.
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/emu/emu.h"
#include "cuda/cuda_engine.h"
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

// Every CudaEngine<float> operation once, on exactly sized emulated device buffers.
static void engine_pass() {
  using pyireg::CudaEngine;
  using pyireg::CudaOp;
  const std::vector<int64_t> off{0, 1, 4, 37};
  const int64_t N = 3, S = 37, d = 5, k = 13, B = 7;
  CudaEngine<float> e(off.data(), N, d, k, pyireg::Activation::relu, pyireg::Loss::cross_entropy);
  auto dev = [](size_t n, float fill) {
    void* p = nullptr;
    cudaMalloc(&p, n * sizeof(float));
    std::vector<float> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = fill * static_cast<float>(static_cast<int>((i * 7919) % 23) - 11) / 11.0f;
    cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    return static_cast<float*>(p);
  };
  float *U = dev(S * d, 0.5f), *V = dev(S * k, 0.5f), *X = dev(B * d, 1.0f), *G = dev(N * B * k, 1.0f);
  float *gU = dev(S * d, 0), *gV = dev(S * k, 0), *gX = dev(B * d, 0), *out = dev(N * B * k, 0);
  float *sU = dev(S * d, 0), *sV = dev(S * k, 0), *hyper = dev(3 * N, 0.1f);
  cudaMemset(hyper + N, 0, N * sizeof(float));  // momentum 0 for DDP
  std::vector<int32_t> yl(B);
  for (int64_t b = 0; b < B; ++b) yl[b] = static_cast<int32_t>(b % k);
  int32_t* y = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&y), B * sizeof(int32_t));
  cudaMemcpy(y, yl.data(), B * sizeof(int32_t), cudaMemcpyHostToDevice);
  double* loss = nullptr;
  int64_t* errs = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&loss), 2 * S * sizeof(double));
  cudaMalloc(reinterpret_cast<void**>(&errs), S * sizeof(int64_t));
  size_t most = 0;
  for (int op = 0; op <= 8; ++op) most = std::max(most, e.workspace_bytes(static_cast<CudaOp>(op), B, 3));
  void* ws = nullptr;
  cudaMalloc(&ws, most);
  pyireg::Targets<float> t;
  t.labels = y;
  pyireg::UpdateRule<float> r;
  r.state_U = sU;
  r.state_V = sV;
  r.lr = hyper;
  r.momentum = hyper + N;
  r.weight_decay = hyper + 2 * N;
  e.forward(U, V, X, B, out, ws, most, nullptr);
  e.backward(U, V, X, B, G, gU, gV, gX, ws, most, nullptr);
  e.loss_and_grad(U, V, X, B, t, loss, gU, gV, ws, most, nullptr);
  e.evaluate(U, V, X, B, t, 3, loss, errs, ws, most, nullptr);
  e.unit_moments(U, X, B, 3, loss, loss + S, ws, most, nullptr);
  for (auto rule : {pyireg::Rule::momentum_sgd, pyireg::Rule::path_sgd}) {
    r.rule = rule;
    e.step(U, V, X, B, t, r, loss, ws, most, nullptr);
    e.apply_update(U, V, gU, gV, r, ws, most, nullptr);
  }
  r.rule = pyireg::Rule::ddp_sgd;
  e.ddp_scale(U, V, X, B, hyper, sU, sV, ws, most, nullptr);
  e.step(U, V, X, B, t, r, loss, ws, most, nullptr);
  e.measures(U, V, loss, nullptr);
  e.balance(U, V, errs, ws, most, nullptr);
  e.normalize_units(U, V, errs, ws, most, nullptr);
  for (void* p : {static_cast<void*>(U), static_cast<void*>(V), static_cast<void*>(X), static_cast<void*>(G),
                  static_cast<void*>(gU), static_cast<void*>(gV), static_cast<void*>(gX), static_cast<void*>(out),
                  static_cast<void*>(sU), static_cast<void*>(sV), static_cast<void*>(hyper), static_cast<void*>(y),
                  static_cast<void*>(loss), static_cast<void*>(errs), ws})
    cudaFree(p);
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
  engine_pass();
  expect(emu::live_allocations() == 0, "every device allocation freed");
  if (planted == "oob_read") {
    std::vector<float> small(100, 1.0f);
    run_selftest("oob_read", small, 25, 4);  // AddressSanitizer reports the read of in[100]
  }
  if (planted == "race") run_selftest("reverse_no_barrier", in, 256, 1);  // ThreadSanitizer reports it
  std::printf("%s: %d failures, %llu launches\n", failures ? "FAILED" : "ok", failures,
              static_cast<unsigned long long>(emu::launches()));
  return failures ? 1 : 0;
}
