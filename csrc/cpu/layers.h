// Per-unit passes of the CPU kernels around the GEMMs: packing the batch, the segmented second
// layer (a network's units into its k outputs) and the backward of a few units (their dV rows,
// their dZ rows with the activation mask).
// Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h).
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/cpu.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

constexpr int64_t kClassGroup = 12;  // outputs handled per pass; keeps accumulators in registers

// XT (d x Bp, row stride xt_stride(Bp)): the batch transposed and zero padded, the B operand of
// the first-layer GEMM.
// Xp (B x dp): the batch zero padded, the B operand of the dU GEMM (only when need_Xp).
template <class T>
void pack_batch(Workspace<T>& ws, const T* X, int64_t B, int64_t d, int64_t Bp, int64_t dp, bool need_Xp) {
  const int64_t ldx = xt_stride<T>(Bp);
  ws.grow(ws.XT, static_cast<size_t>(d * ldx));
  T* XT = ws.XT.data();
  for (int64_t f = 0; f < d; ++f) {
    T* row = XT + f * ldx;
    for (int64_t b = 0; b < B; ++b) row[b] = X[b * d + f];
    for (int64_t b = B; b < Bp; ++b) row[b] = T(0);
  }
  if (!need_Xp) return;
  ws.grow(ws.Xp, static_cast<size_t>(B * dp));
  T* Xp = ws.Xp.data();
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(Xp + b * dp, X + b * d, sizeof(T) * d);
    for (int64_t f = d; f < dp; ++f) Xp[b * dp + f] = T(0);
  }
}

// L[c, j .. j + lanes) = sum_{h < nrows} V[h, c0 + c] * AT[h, j ..] for c < CC: one vector of
// columns (VT: the target's width, or 32 bytes at the row's end), each element summed over h in
// order.
template <class T, class VT, int CC>
inline void second_layer_cols(const T* AT, int64_t nrows, const T* V, int64_t k, int64_t c0, int64_t Bp, int64_t j,
                              T* L) {
  VT acc[CC];
  for (int c = 0; c < CC; ++c) acc[c] = VT{};
  for (int64_t h = 0; h < nrows; ++h) {
    const VT a = ldv<VT>(AT + h * Bp + j);
    const T* v = V + h * k + c0;
    for (int c = 0; c < CC; ++c) acc[c] += splatv<VT>(v[c]) * a;
  }
  for (int c = 0; c < CC; ++c) st(L + (c0 + c) * Bp + j, acc[c]);
}

// L[c, j] (+)= sum_{h < nrows} V[h, c0 + c] * AT[h, j] for c < CC, all j < Bp (a multiple of 32
// bytes).
template <class T, int CC>
void second_layer_group(const T* AT, int64_t nrows, const T* V, int64_t k, int64_t c0, int64_t Bp, T* L) {
  constexpr int W = VecOf<T>::W;
  int64_t j = 0;
  for (; j + W <= Bp; j += W) second_layer_cols<T, vec<T>, CC>(AT, nrows, V, k, c0, Bp, j, L);
  if constexpr (W > VecN<T, 32>::W) {
    for (; j < Bp; j += VecN<T, 32>::W) second_layer_cols<T, vec32<T>, CC>(AT, nrows, V, k, c0, Bp, j, L);
  }
}

#define PYIREG_CLASS_CASES(CALL) \
  CALL(1) CALL(2) CALL(3) CALL(4) CALL(5) CALL(6) CALL(7) CALL(8) CALL(9) CALL(10) CALL(11) CALL(12)

// L (k x Bp) = V[rows]^T AT[rows]: the outputs of nrows units of one network.
template <class T>
void second_layer(const T* AT, int64_t nrows, const T* V, int64_t k, int64_t Bp, T* L) {
  for (int64_t c0 = 0; c0 < k; c0 += kClassGroup) {
    switch (std::min(kClassGroup, k - c0)) {
#define PYIREG_CASE(n) \
  case n: second_layer_group<T, n>(AT, nrows, V, k, c0, Bp, L); break;
      PYIREG_CLASS_CASES(PYIREG_CASE)
#undef PYIREG_CASE
      default: break;
    }
  }
}

// out[c] = hsum(v[c]) for 8 vectors of 8 floats at once: the 8 x 8 block is transposed, and
// the lanes are then added as vectors in hsum's order (0 + lane 0 + lane 1 + ...), so every
// sum has hsum's bits at a fraction of its scalar additions.
// Lanes I... of the 16 lanes of (a, b): GCC's __builtin_shuffle (any GCC with vector
// extensions; __builtin_shufflevector only from GCC 12), clang's __builtin_shufflevector.
template <int... I>
inline vec32<float> shuffle2(vec32<float> a, vec32<float> b) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, I...);
#else
  return __builtin_shuffle(a, b, vec32<int32_t>{I...});
#endif
}

inline void hsum8(const vec32<float>* v, float* out) {
  typedef vec32<float> F;
  auto lo = [](F a, F b) { return shuffle2<0, 8, 1, 9, 4, 12, 5, 13>(a, b); };
  auto hi = [](F a, F b) { return shuffle2<2, 10, 3, 11, 6, 14, 7, 15>(a, b); };
  auto pl = [](F a, F b) { return shuffle2<0, 1, 8, 9, 4, 5, 12, 13>(a, b); };
  auto ph = [](F a, F b) { return shuffle2<2, 3, 10, 11, 6, 7, 14, 15>(a, b); };
  auto ql = [](F a, F b) { return shuffle2<0, 1, 2, 3, 8, 9, 10, 11>(a, b); };
  auto qh = [](F a, F b) { return shuffle2<4, 5, 6, 7, 12, 13, 14, 15>(a, b); };
  const F t0 = lo(v[0], v[1]), t1 = hi(v[0], v[1]), t2 = lo(v[2], v[3]), t3 = hi(v[2], v[3]);
  const F t4 = lo(v[4], v[5]), t5 = hi(v[4], v[5]), t6 = lo(v[6], v[7]), t7 = hi(v[6], v[7]);
  const F u0 = pl(t0, t2), u1 = ph(t0, t2), u2 = pl(t1, t3), u3 = ph(t1, t3);
  const F u4 = pl(t4, t6), u5 = ph(t4, t6), u6 = pl(t5, t7), u7 = ph(t5, t7);
  F s{};  // lane l of every vector is row l of the transpose
  s += ql(u0, u4);
  s += ql(u1, u5);
  s += ql(u2, u6);
  s += ql(u3, u7);
  s += qh(u0, u4);
  s += qh(u1, u5);
  s += qh(u2, u6);
  s += qh(u3, u7);
  st(out, s);
}

// The dv sums' fixed reduction tree, the same on every target: a row of Bp columns is cut into
// blocks of 64 bytes (16 floats, 8 doubles); lane l of the 64-byte accumulator sums column l of
// every block in block order (one fused multiply-add each), a last 32-byte block going into the
// low half; the two 32-byte halves are then added (low + high) and their lanes summed in hsum's
// order. AVX-512 holds the accumulator in one register and adds the last 32-byte block to its
// low half; AVX2 and generic hold its halves in two and run the low halves, then the high ones.

// The dv sums from s[q] = low + high halves of accumulator q (q = u * n + c < m, m = units x n
// outputs) into dv[u * k + c]: the lanes summed in hsum's order, eight accumulators at a time
// for floats (hsum8; s is zero padded to a multiple of 8).
template <class T>
inline void finish_dv(vec32<T>* s, int64_t m, int64_t n, int64_t k, T* dv) {
  int64_t u = 0, c = 0;  // q = u * n + c
  auto put = [&](T x) {
    dv[u * k + c] = x;
    if (++c == n) c = 0, ++u;
  };
  if constexpr (std::is_same<T, float>::value) {
    for (int64_t q = m; q < round_up(m, 8); ++q) s[q] = vec32<T>{};
    for (int64_t q0 = 0; q0 < m; q0 += 8) {
      T out[8];
      hsum8(s + q0, out);
      for (int64_t q = q0; q < std::min<int64_t>(q0 + 8, m); ++q) put(out[q - q0]);
    }
  } else {
    for (int64_t q = 0; q < m; ++q) put(hsum<T>(s[q]));
  }
}

// The two sums of a unit's backward run as small register tiles over a few units, each with
// enough independent chains to hide the fused multiply-add's latency and each row of G loaded
// once for several units, at the target's full width. One unit at a time (dz chains of k
// dependent steps, every dv product loading its row of G) ran the dense step's dV, dZ pass at
// 23-25 GFLOP/s on Zen 3 (AVX2) and 41 on Zen 4 (AVX-512); the tiles: benchmarks/kernels/README.md.

// dz of UR units (rows of at and dz Bp apart, of v k apart) for the NV vectors V of columns from
// j: each column summed over the outputs in order (so any vector width gives its bits), then
// masked by the activation.
template <class T, class V, int UR, int NV>
inline void dz_tile(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, int64_t j, bool use_relu) {
  constexpr int L = lanes<V>();
  V acc[UR][NV];
  for (int i = 0; i < UR; ++i)
    for (int n = 0; n < NV; ++n) acc[i][n] = V{};
  for (int64_t c = 0; c < k; ++c) {
    V g[NV];
    for (int n = 0; n < NV; ++n) g[n] = ldv<V>(G + c * Bp + j + n * L);
    for (int i = 0; i < UR; ++i) {
      const V vc = splatv<V>(v[i * k + c]);
      for (int n = 0; n < NV; ++n) acc[i][n] += vc * g[n];
    }
  }
  for (int i = 0; i < UR; ++i)
    for (int n = 0; n < NV; ++n) {
      const V a = ldv<V>(at + i * Bp + j + n * L);
      st(dz + i * Bp + j + n * L, use_relu ? (a > 0 ? acc[i][n] : V{}) : acc[i][n]);
    }
}

// dz of UR units over the whole row: two of the target's vectors of columns a step, then one,
// then (AVX-512) a last 32-byte half.
template <class T, int UR>
inline void dz_units(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, bool use_relu) {
  constexpr int W = VecOf<T>::W;
  int64_t j = 0;
  for (; j + 2 * W <= Bp; j += 2 * W) dz_tile<T, vec<T>, UR, 2>(at, G, v, k, Bp, dz, j, use_relu);
  if (j + W <= Bp) {
    dz_tile<T, vec<T>, UR, 1>(at, G, v, k, Bp, dz, j, use_relu);
    j += W;
  }
  if constexpr (W > VecN<T, 32>::W) {
    if (j < Bp) dz_tile<T, vec32<T>, UR, 1>(at, G, v, k, Bp, dz, j, use_relu);
  }
}

// One step of the dv tree's tiles: acc[u][c] += at[u, j..] * G[c0 + c, j..] for UR rows of at
// and CC rows of G on the vector V of columns from j (a row of G loaded once for the UR units).
template <class T, class V, int UR, int CC>
inline void dv_products(const T* at, const T* G, int64_t c0, int64_t Bp, int64_t j, V (*acc)[CC]) {
  V a[UR];
  for (int u = 0; u < UR; ++u) a[u] = ldv<V>(at + u * Bp + j);
  for (int c = 0; c < CC; ++c) {
    const V g = ldv<V>(G + (c0 + c) * Bp + j);
    for (int u = 0; u < UR; ++u) acc[u][c] += a[u] * g;
  }
}

// outputs per tile of the dv sums
constexpr int64_t kDvTile = 5;

#if PYIREG_VEC_BYTES == 64
// the low and high 32-byte halves of a 64-byte vector
inline void halves(__m512 v, vec32<float>* lo, vec32<float>* hi) {
  *lo = _mm512_castps512_ps256(v);
  *hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
inline void halves(__m512d v, vec32<double>* lo, vec32<double>* hi) {
  *lo = _mm512_castpd512_pd256(v);
  *hi = _mm512_extractf64x4_pd(v, 1);
}

// dv tiles: 4 units x up to kDvTile outputs, 20 accumulators, four activation vectors and a row
// of G in the 32 registers (2 units a tile ran the dense step's dv sums at 42 GFLOP/s on Zen 4,
// 4 units at 64: a row of G serves more products, and the sums are finished eight at a time
// with fewer padding lanes).
constexpr int kDvUnits = 4;
// The dv tree for UR units (rows of at Bp apart) and outputs [c0, c0 + CC) of a group of n
// outputs from cg: the full 64-byte blocks in one accumulator each, the last 32-byte block into
// its low half, then low + high into s[u * n + c0 + c - cg].
template <class T, int UR, int CC>
inline void dv_tile(const T* at, const T* G, int64_t c0, int64_t Bp, vec32<T>* sum, int64_t n, int64_t cg) {
  constexpr int W = VecOf<T>::W;
  vec<T> s[UR][CC];
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) s[u][c] = vec<T>{};
  int64_t j = 0;
  for (; j + W <= Bp; j += W) dv_products<T, vec<T>, UR, CC>(at, G, c0, Bp, j, s);
  vec32<T> lo[UR][CC], hi[UR][CC];
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) halves(s[u][c], &lo[u][c], &hi[u][c]);
  if (j < Bp) dv_products<T, vec32<T>, UR, CC>(at, G, c0, Bp, j, lo);
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) sum[u * n + c0 + c - cg] = lo[u][c] + hi[u][c];
}
#else
// dv tiles: 2 units x up to kDvTile outputs, 10 accumulators, two activation vectors and a row
// of G in the 16 registers.
constexpr int kDvUnits = 2;
// One half of the dv tree for UR units and outputs [c0, c0 + CC) of a group of n outputs from
// cg: the columns j0, j0 + 64 bytes, ... below Bp (j0 = 0: the blocks' low halves and a last
// 32-byte block; j0 = 32 bytes: their high halves), each lane summed in block order; the low
// halves go into s[u * n + c0 + c - cg], the high ones are added to them.
template <class T, int UR, int CC>
inline void dv_half(const T* at, const T* G, int64_t c0, int64_t Bp, int64_t j0, vec32<T>* sum, int64_t n, int64_t cg) {
  constexpr int H = VecN<T, 32>::W;
  vec32<T> s[UR][CC];
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) s[u][c] = vec32<T>{};
  for (int64_t j = j0; j < Bp; j += 2 * H) dv_products<T, vec32<T>, UR, CC>(at, G, c0, Bp, j, s);
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) {
      vec32<T>& out = sum[u * n + c0 + c - cg];
      out = j0 == 0 ? s[u][c] : out + s[u][c];
    }
}

// The low halves, then the high halves, for CC outputs from c0.
template <class T, int UR, int CC>
inline void dv_tile(const T* at, const T* G, int64_t c0, int64_t Bp, vec32<T>* sum, int64_t n, int64_t cg) {
  dv_half<T, UR, CC>(at, G, c0, Bp, 0, sum, n, cg);
  dv_half<T, UR, CC>(at, G, c0, Bp, VecN<T, 32>::W, sum, n, cg);
}
#endif

// The tile for outputs [c0, c0 + cc), cc <= kDvTile.
template <class T, int UR>
inline void dv_tiles(const T* at, const T* G, int64_t c0, int64_t cc, int64_t Bp, vec32<T>* sum, int64_t n,
                     int64_t cg) {
  switch (cc) {
    case 1: dv_tile<T, UR, 1>(at, G, c0, Bp, sum, n, cg); break;
    case 2: dv_tile<T, UR, 2>(at, G, c0, Bp, sum, n, cg); break;
    case 3: dv_tile<T, UR, 3>(at, G, c0, Bp, sum, n, cg); break;
    case 4: dv_tile<T, UR, 4>(at, G, c0, Bp, sum, n, cg); break;
    case 5: dv_tile<T, UR, 5>(at, G, c0, Bp, sum, n, cg); break;
    default: break;
  }
}

// dv of UR units (rows of dv k apart): up to sixteen outputs at a time, computed in even tiles
// of up to kDvTile outputs (every lane of every accumulator a chain: enough to hide the
// latency), then finished eight (unit, output) sums at a time across the units.
template <class T, int UR>
void dv_units(const T* at, const T* G, int64_t k, int64_t Bp, T* dv) {
  vec32<T> sum[UR * 16 + 8];
  for (int64_t cg = 0; cg < k; cg += 16) {
    const int64_t n = std::min<int64_t>(16, k - cg), tiles = (n + kDvTile - 1) / kDvTile;
    for (int64_t t = 0, c0 = cg; t < tiles; ++t) {
      const int64_t cc = (n - (c0 - cg) + (tiles - t) - 1) / (tiles - t);  // the rest, evenly
      dv_tiles<T, UR>(at, G, c0, cc, Bp, sum, n, cg);
      c0 += cc;
    }
    finish_dv<T>(sum, UR * n, n, k, dv + cg);
  }
}

// units per call of units_backward from a training pass
constexpr int64_t kBackwardUnits = 4;

// The backward of n consecutive units of one network (rows of at and dz Bp apart, of v and dv
// k apart) from the gradient G (k x Bp) of its outputs: dv and dz of each unit, the same bits
// on every target.
template <class T>
void units_backward(const T* at, const T* G, const T* v, int64_t n, int64_t k, int64_t Bp, T* dz, T* dv,
                    bool use_relu) {
  constexpr int UR = 4;
  int64_t i = 0;
  for (; i + UR <= n; i += UR) dz_units<T, UR>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu);
  switch (n - i) {
    case 1: dz_units<T, 1>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    case 2: dz_units<T, 2>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    case 3: dz_units<T, 3>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    default: break;
  }
  for (i = 0; i + kDvUnits <= n; i += kDvUnits) dv_units<T, kDvUnits>(at + i * Bp, G, k, Bp, dv + i * k);
  switch (n - i) {
    case 1: dv_units<T, 1>(at + i * Bp, G, k, Bp, dv + i * k); break;
    case 2: dv_units<T, 2>(at + i * Bp, G, k, Bp, dv + i * k); break;
    case 3: dv_units<T, 3>(at + i * Bp, G, k, Bp, dv + i * k); break;
    default: break;
  }
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
