// Register-blocked GEMM of the CPU kernels, with the epilogue as a policy: each finished
// register tile is handed to an epilogue object, which stores it (optionally through the relu)
// or adds it to C in double.
// Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h). Every element
// of a product is one sum over the inner dimension in the same order on every target, whatever
// the vector width: the targets with FMA give the same bits.
#pragma once

#include <algorithm>
#include <type_traits>

#include "cpu/cpu.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// Epilogues take a tile row's vector of any width (the target's, or 32 bytes at a row's end).

// C[i, j] = act(tile): the forward product (RELU fuses the activation) and plain products.
template <class T, bool RELU>
struct StoreEpilogue {
  T* C;
  int64_t ldc;
  template <class V>
  void operator()(int64_t i, int64_t j, V acc) const {
    st(C + i * ldc + j, RELU ? relu(acc) : acc);
  }
};

// C[i, j] += tile, C in double: a product summed over blocks of its inner dimension (the input
// gradient, over chunks of units), each block summed in registers, the blocks in double.
template <class T>
struct AddDoubleEpilogue {
  double* C;
  int64_t ldc;
  template <class V>
  void operator()(int64_t i, int64_t j, V acc) const {
    double* c = C + i * ldc + j;
    for (int e = 0; e < lanes<V>(); ++e) c[e] += static_cast<double>(acc[e]);
  }
};

// The inner dimension is summed in blocks of kInnerBlock terms, each block in fresh registers
// and added to the tile's running sum, so rounding error grows with about kInnerBlock + K /
// kInnerBlock terms instead of K: one run over a 784-long product (the first layer on MNIST
// pixels) erred 2.4 times as much as torch's float32 product, over 3,000 terms 3.9 times. A
// product with K <= kInnerBlock (d = 100, batch 100) is one block: the same bits as one run.
constexpr int64_t kInnerBlock = 128;

// A register tile: kTileRows rows x kTileVecs vectors of accumulators. AVX-512: 8 x 2 of its 32
// registers. AVX2: 4 x 3, 12 accumulators, three vectors of B and a broadcast in the 16
// registers (7 loads per 12 multiply-adds, where 6 x 2 took 8): the dense step's forward 141 ->
// 116 ms and its dU product 162 -> 143 ms (phase sandbox, one thread, Zen 4 running the AVX2
// target; AVX-512's 8 x 2 there: 120 / 137 ms, and 6 x 3, 8 x 3, 4 x 4 within 3% of it).
// benchmarks/kernels/README.md has the trials. A tile's shape does not change a sum's order.
constexpr int kTileRows = PYIREG_VEC_BYTES >= 64 ? 8 : 4;
constexpr int kTileVecs = PYIREG_VEC_BYTES >= 64 ? 2 : 3;

// f(std::integral_constant<int, r>) for the rows left over at a block's end, r in [1, R] (none
// for r = 0): each count its own tile, compiled for the counts a tile of R + 1 rows can leave.
template <int R, class F>
inline void rows_left(int64_t r, F&& f) {
  if constexpr (R > 0) {
    if (r == R)
      f(std::integral_constant<int, R>{});
    else
      rows_left<R - 1>(r, f);
  }
}

template <class T, class V, int MR, int NV, bool TA>
inline void micro_block(int64_t k0, int64_t k1, const T* A, int64_t lda, const T* Bm, int64_t ldb, V (&acc)[MR][NV]) {
  constexpr int W = lanes<V>();
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t kk = k0; kk < k1; ++kk) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = ldv<V>(Bm + kk * ldb + v * W);
    for (int i = 0; i < MR; ++i) {
      const V a = splatv<V>(TA ? A[i + kk * lda] : A[i * lda + kk]);
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
}

// The MR x (NV * lanes of V) tile of rows i0.. and columns j0.. of A (M x K) * Bm (K x ncols),
// where A points at row i0 and Bm at column j0. TA: A is stored transposed (element (i, kk) at
// A[i + kk * lda]) instead of row-major (A[i * lda + kk]).
template <class T, class V, int MR, int NV, bool TA, class Epi>
inline void micro(int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t i0, int64_t j0,
                  const Epi& epi) {
  constexpr int W = lanes<V>();
  V acc[MR][NV];
  micro_block<T, V, MR, NV, TA>(0, std::min(K, kInnerBlock), A, lda, Bm, ldb, acc);
  if (K > kInnerBlock) {
    V sum[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) sum[i][v] = acc[i][v];
    for (int64_t k0 = kInnerBlock; k0 < K; k0 += kInnerBlock) {
      micro_block<T, V, MR, NV, TA>(k0, std::min(K, k0 + kInnerBlock), A, lda, Bm, ldb, acc);
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) sum[i][v] += acc[i][v];
    }
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = sum[i][v];
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) epi(i0 + i, j0 + v * W, acc[i][v]);
}

// The tiles of MR rows across the columns [j0, ncols) (ncols - j0 a multiple of 32 bytes):
// kTileVecs vectors of the target's width at a time, then two (when kTileVecs is 3), then one,
// then, on a target wider than 32 bytes, one 32-byte vector for the row's end.
template <class T, int MR, bool TA, class Epi>
inline void tile_row(int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t i0,
                     const Epi& epi) {
  constexpr int W = VecOf<T>::W, NV = kTileVecs;
  int64_t j = 0;
  for (; j + NV * W <= ncols; j += NV * W) micro<T, vec<T>, MR, NV, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
  if constexpr (NV > 2) {
    if (j + 2 * W <= ncols) {
      micro<T, vec<T>, MR, 2, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
      j += 2 * W;
    }
  }
  if (j + W <= ncols) {
    micro<T, vec<T>, MR, 1, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
    j += W;
  }
  if constexpr (W > VecN<T, 32>::W) {
    if (j < ncols) micro<T, vec32<T>, MR, 1, TA>(K, A, lda, Bm + j, ldb, i0, j, epi);
  }
}

// A region of memory a later product will read (the next chunk's rows of U), fetched into the
// cache a few lines per tile while this product runs, so that the memory traffic of a stream
// of products spreads over their compute instead of stalling the first column panel of each.
struct Ahead {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t per_tile = 0;
  inline void step() {
    for (int64_t i = 0; i < per_tile && next < end; ++i, next += 64) __builtin_prefetch(next, 0, 2);
  }
};

// Row blocks ahead whose rows of A the first column panel prefetches: the forward product
// streams U from memory, and the block after next arriving in time took the dense step's forward
// from 103 to 87-91 ms with AVX-512 and from 146 to 131-137 ms with AVX2 (phase sandbox, one
// thread); later panels find A in L2.
constexpr int kPrefetchBlocks = 2;

// One column panel [j, j + width) (a width of kTileVecs vectors, two, one, or a 32-byte one:
// V, NV) for every block of MR rows, then the rows left over.
template <class T, class V, int MR, int NV, bool TA, class Epi>
inline void panel(int64_t M, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, int64_t j, const Epi& epi,
                  Ahead* ahead) {
  auto row = [&](int64_t i) { return TA ? A + i : A + i * lda; };
  int64_t i = 0;
  for (; i + MR <= M; i += MR) {
    if (ahead) ahead->step();
    if (!TA && j == 0 && i + (kPrefetchBlocks + 1) * MR <= M) {
      const char* ahead = reinterpret_cast<const char*>(row(i + kPrefetchBlocks * MR));
      for (int64_t b = 0; b < MR * lda * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(ahead + b, 0, 3);
    }
    micro<T, V, MR, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi);
  }
  rows_left<MR - 1>(M - i,
                    [&](auto R) { micro<T, V, decltype(R)::value, NV, TA>(K, row(i), lda, Bm + j, ldb, i, j, epi); });
}

// epi receives every tile of A (M x K) * Bm (K x ncols); ncols is a multiple of 32 bytes and
// Bm's rows are padded to it. Rows are taken kTileRows at a time.
// Loop order: rows outer (default) walks all column panels of one row block before the next;
// COLS_OUTER walks all row
// blocks of one column panel of Bm before the next, keeping that panel in L1 (the forward
// product: Bm is the whole batch, larger than L1). Each tile is computed the same way in either
// order, so the results are bit-identical.
// With COLS_OUTER, `ahead` (when given) is fetched over the product's full row blocks.
template <class T, bool TA = false, bool COLS_OUTER = false, class Epi>
void gemm(int64_t M, int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, const Epi& epi,
          Ahead* ahead = nullptr) {
  constexpr int MR = kTileRows, W = VecOf<T>::W, NV = kTileVecs;
  if (COLS_OUTER) {
    if (ahead) {
      const int64_t panels = (ncols + NV * W - 1) / (NV * W) + 1, tiles = std::max<int64_t>(1, M / MR * panels);
      ahead->per_tile = ((ahead->end - ahead->next) / 64 + tiles - 1) / tiles;
    }
    int64_t j = 0;
    for (; j + NV * W <= ncols; j += NV * W) panel<T, vec<T>, MR, NV, TA>(M, K, A, lda, Bm, ldb, j, epi, ahead);
    if constexpr (NV > 2) {
      if (j + 2 * W <= ncols) {
        panel<T, vec<T>, MR, 2, TA>(M, K, A, lda, Bm, ldb, j, epi, ahead);
        j += 2 * W;
      }
    }
    if (j + W <= ncols) {
      panel<T, vec<T>, MR, 1, TA>(M, K, A, lda, Bm, ldb, j, epi, ahead);
      j += W;
    }
    if constexpr (W > VecN<T, 32>::W) {
      if (j < ncols) panel<T, vec32<T>, MR, 1, TA>(M, K, A, lda, Bm, ldb, j, epi, ahead);
    }
    return;
  }
  auto row = [&](int64_t i) { return TA ? A + i : A + i * lda; };
  int64_t i = 0;
  for (; i + MR <= M; i += MR) tile_row<T, MR, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi);
  rows_left<MR - 1>(M - i,
                    [&](auto R) { tile_row<T, decltype(R)::value, TA>(ncols, K, row(i), lda, Bm, ldb, i, epi); });
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
