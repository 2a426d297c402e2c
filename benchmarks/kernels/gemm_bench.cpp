// Kernel sandbox: the first-layer product of one chunk (M units x K=d features) x (d x Bp batch)
// and the dU product (M units x K=B samples) x (B x dp), timed in thread CPU time for variants of
// the register-blocked GEMM, in alternating rounds. Build: see README.md beside this file.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#ifndef PYIREG_ISA  // -DPYIREG_ISA=avx512 -DPYIREG_VEC_BYTES=64 for the AVX-512 kernels
#define PYIREG_ISA avx2
#endif
#include "cpu/gemm.h"

using namespace pyireg::PYIREG_ISA;
using T = float;

static double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ---- variant 1: column panel outer (the 16-column panel of B stays in L1 across all rows)
template <class Epi>
void gemm_panel_outer(int64_t M, int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb,
                      const Epi& epi) {
  constexpr int W = 8, MR = 6;
  int64_t j = 0;
  for (; j + 2 * W <= ncols; j += 2 * W) {
    for (int64_t i = 0; i < M; i += MR) {  // M is a multiple of MR in this sandbox
      micro<T, vec<T>, MR, 2, false>(K, A + i * lda, lda, Bm + j, ldb, i, j, epi);
    }
  }
  if (j < ncols)
    for (int64_t i = 0; i < M; i += MR) micro<T, vec<T>, MR, 1, false>(K, A + i * lda, lda, Bm + j, ldb, i, j, epi);
}

// ---- variant 2: A packed per 6-row panel, k-major (the 6 broadcasts of a k step are adjacent)
template <class Epi>
void gemm_packA(int64_t M, int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, const Epi& epi,
                T* pack) {
  constexpr int MR = 6;
  int64_t i = 0;
  for (; i + MR <= M; i += MR) {
    for (int64_t kk = 0; kk < K; ++kk)
      for (int r = 0; r < MR; ++r) pack[kk * MR + r] = A[(i + r) * lda + kk];
    // packed: element (r, kk) at pack[r + kk * MR]: the transposed-A micro-kernel with lda = MR
    tile_row<T, MR, true>(ncols, K, pack, MR, Bm, ldb, i, epi);
  }
  if (i < M)
    gemm<T>(M - i, ncols, K, A + i * lda, lda, Bm, ldb, [&](int64_t r, int64_t c, vec<T> v) { epi(i + r, c, v); });
}

int main(int argc, char** argv) {
  const int64_t M = 192, d = 100, W = 8;
  const int64_t B = argc > 3 ? std::atoi(argv[3]) : 100;
  const int64_t Bp = (B + W - 1) / W * W, dp = (d + W - 1) / W * W;
  // row stride of the batch: with a 5th argument 1, one vector more when Bp floats are a multiple
  // of 256 bytes (rows a power-of-two apart fall into the same few L1 sets)
  const int64_t ldx = (argc > 4 && std::atoi(argv[4]) && (Bp * 4) % 256 == 0) ? Bp + W : Bp;
  const int chunks = argc > 1 ? std::atoi(argv[1]) : 200;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  std::mt19937 g(0);
  std::normal_distribution<float> n01;
  std::vector<T> U(chunks * M * d), XT(d * ldx), C(M * Bp), dZ(M * Bp), Xp(B * dp), dU(M * dp);
  for (auto& x : U) x = n01(g);
  for (auto& x : XT) x = n01(g);
  for (auto& x : dZ) x = n01(g);
  for (auto& x : Xp) x = n01(g);
  std::vector<T> pack(6 * std::max(d, B));
  const double fwd_flops = 2.0 * M * d * B * chunks;  // useful (unpadded)
  struct V {
    const char* name;
    double best = 1e9;
  };
  V vs[] = {{"forward: current (rows outer)"},
            {"forward: column panel outer"},
            {"forward: packed A"},
            {"dU: current"},
            {"dU: column panel outer"},
            {"dU: packed A"}};
  for (int r = 0; r < rounds; ++r) {
    for (int v = 0; v < 6; ++v) {
      const double t0 = thread_seconds();
      for (int c = 0; c < chunks; ++c) {
        if (v < 3) {
          StoreEpilogue<T, true> e{C.data(), Bp};
          const T* A = U.data() + c * M * d;
          if (v == 0) gemm<T>(M, Bp, d, A, d, XT.data(), ldx, e);
          if (v == 1) gemm_panel_outer(M, Bp, d, A, d, XT.data(), ldx, e);
          if (v == 2) gemm_packA(M, Bp, d, A, d, XT.data(), ldx, e, pack.data());
        } else {
          StoreEpilogue<T, false> e{dU.data(), dp};
          if (v == 3) gemm<T>(M, dp, B, dZ.data(), Bp, Xp.data(), dp, e);
          if (v == 4) gemm_panel_outer(M, dp, B, dZ.data(), Bp, Xp.data(), dp, e);
          if (v == 5) gemm_packA(M, dp, B, dZ.data(), Bp, Xp.data(), dp, e, pack.data());
        }
      }
      vs[v].best = std::min(vs[v].best, thread_seconds() - t0);
    }
  }
  for (auto& v : vs) std::printf("%-34s %7.2f GFLOP/s (1 thread, useful)\n", v.name, fwd_flops / v.best / 1e9);
  return 0;
}
