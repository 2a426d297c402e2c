// Register-blocked GEMM of the CPU kernels, with the epilogue as a policy: each finished
// register tile is handed to an epilogue object, which stores it (optionally through the relu),
// adds it to C, or applies an update rule to the weights whose gradient it is.
// Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h).
#pragma once

#include <algorithm>

#include "engine/ops.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// C[i, j] = act(tile): the forward product (RELU fuses the activation) and plain products.
template <class T, bool RELU>
struct StoreEpilogue {
  T* C;
  int64_t ldc;
  void operator()(int64_t i, int64_t j, vec<T> acc) const { st(C + i * ldc + j, RELU ? relu<T>(acc) : acc); }
};

// C[i, j] += tile, C in double: a product summed over blocks of its inner dimension (the input
// gradient, over chunks of units), each block summed in registers, the blocks in double.
template <class T>
struct AddDoubleEpilogue {
  double* C;
  int64_t ldc;
  void operator()(int64_t i, int64_t j, vec<T> acc) const {
    constexpr int W = VecOf<T>::W;
    double* c = C + i * ldc + j;
    for (int e = 0; e < W; ++e) c[e] += static_cast<double>(acc[e]);
  }
};

// The tile is the gradient of rows of the weights W (row stride ld, `valid` real columns, the
// rest padding): apply the update rule to them with their state S and per-row coefficients,
// instead of storing the gradient.
template <class T, class Rule>
struct RuleEpilogue {
  T* W;
  T* S;
  int64_t ld;
  int64_t valid;
  const T* coef;  // Rule::kCoefs per row
  void operator()(int64_t i, int64_t j, vec<T> acc) const {
    constexpr int VW = VecOf<T>::W;
    if (j >= valid) return;
    T g[VW];
    st(g, acc);
    Rule::apply(std::min<int64_t>(VW, valid - j), W + i * ld + j, S + i * ld + j, g, coef + i * Rule::kCoefs);
  }
};

// The inner dimension is summed in blocks of kInnerBlock terms, each block in fresh registers
// and added to the tile's running sum, so rounding error grows with about kInnerBlock + K /
// kInnerBlock terms instead of K: one run over a 784-long product (the first layer on MNIST
// pixels) erred 2.4x, over 3,000 terms 3.9x, as much as torch's float32 product. A product with
// K <= kInnerBlock (d = 100, batch 100) is one block: the same bits as a single run.
constexpr int64_t kInnerBlock = 128;

template <class T, int MR, int NV, bool TA>
inline void micro_block(int64_t k0, int64_t k1, const T* A, int64_t lda, const T* Bm, int64_t ldb,
                        vec<T> (&acc)[MR][NV]) {
  constexpr int W = VecOf<T>::W;
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = vec<T>{};
  for (int64_t kk = k0; kk < k1; ++kk) {
    vec<T> b[NV];
    for (int v = 0; v < NV; ++v) b[v] = ld(Bm + kk * ldb + v * W);
    for (int i = 0; i < MR; ++i) {
      const vec<T> a = splat(TA ? A[i + kk * lda] : A[i * lda + kk]);
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
}

// The MR x (NV * W) tile of rows i0.. and columns j0.. of A (M x K) * Bm (K x ncols), where A
// points at row i0 and Bm at column j0. TA: A is stored transposed (element (i, kk) at
// A[i + kk * lda]) instead of row-major (A[i * lda + kk]).
template <class T, int MR, int NV, bool TA, class Epi>
inline void micro(int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t i0, int64_t j0,
                  const Epi& epi) {
  constexpr int W = VecOf<T>::W;
  vec<T> acc[MR][NV];
  micro_block<T, MR, NV, TA>(0, std::min(K, kInnerBlock), A, lda, Bm, ldb, acc);
  if (K > kInnerBlock) {
    vec<T> sum[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) sum[i][v] = acc[i][v];
    for (int64_t k0 = kInnerBlock; k0 < K; k0 += kInnerBlock) {
      micro_block<T, MR, NV, TA>(k0, std::min(K, k0 + kInnerBlock), A, lda, Bm, ldb, acc);
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) sum[i][v] += acc[i][v];
    }
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = sum[i][v];
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) epi(i0 + i, j0 + v * W, acc[i][v]);
}

template <class T, int MR, bool TA, class Epi>
inline void gemm_cols(int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t i0,
                      const Epi& epi) {
  constexpr int W = VecOf<T>::W;
  int64_t j = 0;
  for (; j + 2 * W <= ncols; j += 2 * W) micro<T, MR, 2, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
  if (j < ncols) micro<T, MR, 1, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
}

// epi receives every tile of A (M x K) * Bm (K x ncols); ncols is a multiple of W and Bm's rows
// are padded to it. Rows are taken MR = 6 at a time (6 x 16 accumulators for float).
// Loop order: rows outer (default) walks all column panels of one 6-row block before the next,
// so an epilogue that updates weights finishes each row in one burst; COLS_OUTER walks all row
// blocks of one 16-column panel of Bm before the next, keeping that panel in L1 (the forward
// product: Bm is the whole batch, larger than L1). Each tile is computed the same way in either
// order, so the results are bit-identical.
template <class T, int MR, int NV, bool TA, class Epi>
inline void row_blocks(int64_t M, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t j,
                       const Epi& epi) {
  auto row = [&](int64_t i) { return TA ? A + i : A + i * lda; };
  int64_t i = 0;
  for (; i + MR <= M; i += MR) micro<T, MR, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi);
  switch (M - i) {
    case 1: micro<T, 1, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); break;
    case 2: micro<T, 2, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); break;
    case 3: micro<T, 3, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); break;
    case 4: micro<T, 4, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); break;
    case 5: micro<T, 5, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); break;
    default: break;
  }
}

template <class T, bool TA = false, bool COLS_OUTER = false, class Epi>
void gemm(int64_t M, int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, const Epi& epi) {
  constexpr int MR = 6, W = VecOf<T>::W;
  if (COLS_OUTER) {
    int64_t j = 0;
    for (; j + 2 * W <= ncols; j += 2 * W) row_blocks<T, MR, 2, TA>(M, K, A, lda, Bm, ldb, j, epi);
    if (j < ncols) row_blocks<T, MR, 1, TA>(M, K, A, lda, Bm, ldb, j, epi);
    return;
  }
  auto row = [&](int64_t i) { return TA ? A + i : A + i * lda; };
  int64_t i = 0;
  for (; i + MR <= M; i += MR) gemm_cols<T, MR, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi);
  switch (M - i) {
    case 1: gemm_cols<T, 1, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); break;
    case 2: gemm_cols<T, 2, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); break;
    case 3: gemm_cols<T, 3, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); break;
    case 4: gemm_cols<T, 4, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); break;
    case 5: gemm_cols<T, 5, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); break;
    default: break;
  }
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
