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
// order. AVX-512 holds the accumulator in one register; AVX2 and generic hold its halves in two.
// (The order does not depend on how a target unrolls its loop, and a zero added into the high
// half by AVX-512's last block can change only the sign of a zero lane, which the final sum,
// started at +0, does not see.)
// AVX-512: outputs handled per pass of the dV, dZ pass, their accumulators in registers (32 of
// 64 bytes). The grouping does not change a bit: dz is summed over the outputs in order across
// passes, each dv on its own.
constexpr int64_t kBackwardClassGroup = 12;
// units per call of units_backward from a training pass
constexpr int64_t kBackwardUnits = 4;

// dv[c0 + c] = the tree's sum of lo[c] + hi[c] (32-byte halves of the accumulators) for c < CC.
template <class T, int CC>
inline void finish_dv(vec32<T>* lo, const vec32<T>* hi, int64_t c0, T* dv) {
  for (int c = 0; c < CC; ++c) lo[c] += hi[c];
  int c = 0;
  if constexpr (std::is_same<T, float>::value)
    for (; c + 8 <= CC; c += 8) hsum8(lo + c, dv + c0 + c);
  for (; c < CC; ++c) dv[c0 + c] = hsum<T>(lo[c]);
}

#if PYIREG_VEC_BYTES == 64
// AVX-512 pieces of unit_backward_group. The row's last 64-byte block may be half full (Bp is a
// multiple of 32 bytes): it is loaded and stored under a lane mask, and its dv products go only
// into the accumulators' masked lanes (the others keep their bits).
inline __m512 masked_load(unsigned m, const float* p) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p); }
inline __m512d masked_load(unsigned m, const double* p) { return _mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p); }
inline void masked_store(unsigned m, float* p, __m512 v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
inline void masked_store(unsigned m, double* p, __m512d v) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v); }
inline __m512 masked_fma(__m512 a, __m512 b, __m512 c, unsigned m) {
  return _mm512_mask3_fmadd_ps(a, b, c, static_cast<__mmask16>(m));
}
inline __m512d masked_fma(__m512d a, __m512d b, __m512d c, unsigned m) {
  return _mm512_mask3_fmadd_pd(a, b, c, static_cast<__mmask8>(m));
}
// the low and high 32-byte halves of a 64-byte vector
inline void halves(__m512 v, vec32<float>* lo, vec32<float>* hi) {
  *lo = _mm512_castps512_ps256(v);
  *hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
inline void halves(__m512d v, vec32<double>* lo, vec32<double>* hi) {
  *lo = _mm512_castpd512_pd256(v);
  *hi = _mm512_extractf64x4_pd(v, 1);
}

// NB blocks of 64 bytes from column j, the last one under the lane mask m (all lanes but at the
// row's end, which may be half full): NB independent dz chains, each block's activations and dz
// in registers across the outputs.
template <class T, int CC, int NB>
inline void wide_blocks(const T* at, const T* G, const T* v, int64_t c0, int64_t Bp, T* dz, bool first, bool mask,
                        int64_t j, vec<T>* acc, unsigned m) {
  constexpr int W = VecOf<T>::W;
  const int64_t jl = j + (NB - 1) * W;  // the last block
  vec<T> a[NB], da[NB];
#pragma GCC unroll 8
  for (int i = 0; i < NB - 1; ++i) {
    a[i] = ld(at + j + i * W);
    da[i] = first ? vec<T>{} : ld(dz + j + i * W);
  }
  a[NB - 1] = masked_load(m, at + jl);
  da[NB - 1] = first ? vec<T>{} : vec<T>(masked_load(m, dz + jl));
#pragma GCC unroll 16
  for (int c = 0; c < CC; ++c) {
    const vec<T> vc = splat(v[c0 + c]);
    const T* g = G + (c0 + c) * Bp;
#pragma GCC unroll 8
    for (int i = 0; i < NB - 1; ++i) {
      const vec<T> gi = ld(g + j + i * W);
      acc[c] += a[i] * gi;
      da[i] += vc * gi;
    }
    const vec<T> gl = masked_load(m, g + jl);
    acc[c] = masked_fma(a[NB - 1], gl, acc[c], m);
    da[NB - 1] += vc * gl;
  }
#pragma GCC unroll 8
  for (int i = 0; i < NB; ++i) {
    const vec<T> out = mask ? (a[i] > 0 ? da[i] : vec<T>{}) : da[i];
    if (i < NB - 1)
      st(dz + j + i * W, out);
    else
      masked_store(m, dz + jl, out);
  }
}

// The whole AVX-512 row of one unit for CC outputs, ending with NBE blocks (the last perhaps
// half full): the accumulators stay in registers from the first block to the dv sums.
template <class T, int CC, int NBE>
inline void wide_unit(const T* at, const T* G, const T* v, int64_t c0, int64_t Bp, T* dz, T* dv, bool first,
                      bool mask) {
  constexpr int W = VecOf<T>::W;
  vec<T> acc[CC];
  for (int c = 0; c < CC; ++c) acc[c] = vec<T>{};
  int64_t j = 0;  // four full blocks a step while more than four are left
  for (; Bp - j > 4 * W; j += 4 * W) wide_blocks<T, CC, 4>(at, G, v, c0, Bp, dz, first, mask, j, acc, (1u << W) - 1u);
  wide_blocks<T, CC, NBE>(at, G, v, c0, Bp, dz, first, mask, j, acc, (1u << (Bp - j - (NBE - 1) * W)) - 1u);
  vec32<T> lo[CC], hi[CC];
  for (int c = 0; c < CC; ++c) halves(acc[c], &lo[c], &hi[c]);
  finish_dv<T, CC>(lo, hi, c0, dv);
}
#endif

#if PYIREG_VEC_BYTES == 64
// One unit's backward for outputs [c0, c0 + CC) on AVX-512: dv[c] = <at, G[c]> (the tree
// above), dz += sum_c v[c] G[c] (each column on its own: any width gives its bits); on the last
// output group the activation mask is applied. Four blocks a step: four independent dz chains
// (each a sum over the outputs, a chain of CC dependent fused multiply-adds).
template <class T, int CC>
void unit_backward_group(const T* at, const T* G, const T* v, int64_t c0, int64_t Bp, T* dz, T* dv, bool first,
                         bool last, bool use_relu) {
  constexpr int W = VecOf<T>::W;
  const bool mask = last && use_relu;
  int64_t jend = 0;  // where the steps of four blocks end
  while (Bp - jend > 4 * W) jend += 4 * W;
  switch ((Bp - jend + W - 1) / W) {  // 1 to 4 blocks left, the last perhaps half full
    case 1: wide_unit<T, CC, 1>(at, G, v, c0, Bp, dz, dv, first, mask); break;
    case 2: wide_unit<T, CC, 2>(at, G, v, c0, Bp, dz, dv, first, mask); break;
    case 3: wide_unit<T, CC, 3>(at, G, v, c0, Bp, dz, dv, first, mask); break;
    default: wide_unit<T, CC, 4>(at, G, v, c0, Bp, dz, dv, first, mask); break;
  }
}

// Unit h's backward from the gradient G (k x Bp) of its network's outputs: dv (k) and dz (Bp).
template <class T>
void unit_backward(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, T* dv, bool use_relu) {
  constexpr int64_t CG = kBackwardClassGroup;
  for (int64_t c0 = 0; c0 < k; c0 += CG) {
    const bool first = c0 == 0, last = c0 + CG >= k;
    switch (std::min(CG, k - c0)) {
#define PYIREG_CASE(n) \
  case n: unit_backward_group<T, n>(at, G, v, c0, Bp, dz, dv, first, last, use_relu); break;
      PYIREG_CLASS_CASES(PYIREG_CASE)
#undef PYIREG_CASE
      default: break;
    }
  }
}
#else
// On 32-byte vectors (AVX2, generic) the two sums run as small register tiles over a few units,
// each with enough independent chains to hide the fused multiply-add's latency and each row of G
// loaded once for several units. One unit at a time (dz chains of k dependent steps, two halves
// of accumulators per output: six outputs and a 64-byte block spilled) ran the dense step's
// dV, dZ pass at 23-25 GFLOP/s on Zen 3 (phase sandbox, one thread); these tiles at 35.

// dz of UR units (rows of at and dz Bp apart, of v k apart) for the NV vectors of columns from
// j: each column summed over the outputs in order, then masked by the activation.
template <class T, int UR, int NV>
inline void dz_tile(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, int64_t j, bool use_relu) {
  constexpr int H = VecN<T, 32>::W;
  vec32<T> acc[UR][NV];
  for (int i = 0; i < UR; ++i)
    for (int n = 0; n < NV; ++n) acc[i][n] = vec32<T>{};
  for (int64_t c = 0; c < k; ++c) {
    vec32<T> g[NV];
    for (int n = 0; n < NV; ++n) g[n] = ld32(G + c * Bp + j + n * H);
    for (int i = 0; i < UR; ++i) {
      const vec32<T> vc = splat32(v[i * k + c]);
      for (int n = 0; n < NV; ++n) acc[i][n] += vc * g[n];
    }
  }
  for (int i = 0; i < UR; ++i)
    for (int n = 0; n < NV; ++n) {
      const vec32<T> a = ld32(at + i * Bp + j + n * H);
      st(dz + i * Bp + j + n * H, use_relu ? (a > 0 ? acc[i][n] : vec32<T>{}) : acc[i][n]);
    }
}

// dz of UR units over the whole row: two vectors of columns a step, then one.
template <class T, int UR>
inline void dz_units(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, bool use_relu) {
  constexpr int H = VecN<T, 32>::W;
  int64_t j = 0;
  for (; j + 2 * H <= Bp; j += 2 * H) dz_tile<T, UR, 2>(at, G, v, k, Bp, dz, j, use_relu);
  if (j < Bp) dz_tile<T, UR, 1>(at, G, v, k, Bp, dz, j, use_relu);
}

// One half of the dv tree for UR units (rows of at Bp apart) and outputs [c0, c0 + CC): the
// columns j0, j0 + 64 bytes, ... below Bp (j0 = 0: the blocks' low halves and a last 32-byte
// block; j0 = 32 bytes: their high halves), each lane summed in block order, into
// acc[u][c0 + c - cg] (cg: the first output of the group being gathered). A row of G is loaded
// once for the UR units (one unit and eight outputs, every product loading its G, ran at a
// quarter of the fused multiply-add's rate on Zen 3).
template <class T, int UR, int CC>
inline void dv_half(const T* at, const T* G, int64_t c0, int64_t Bp, int64_t j0, vec32<T> (*acc)[16], int64_t cg) {
  constexpr int H = VecN<T, 32>::W;
  vec32<T> s[UR][CC];
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) s[u][c] = vec32<T>{};
  for (int64_t j = j0; j < Bp; j += 2 * H) {
    vec32<T> a[UR];
    for (int u = 0; u < UR; ++u) a[u] = ld32(at + u * Bp + j);
    for (int c = 0; c < CC; ++c) {
      const vec32<T> g = ld32(G + (c0 + c) * Bp + j);
      for (int u = 0; u < UR; ++u) s[u][c] += a[u] * g;
    }
  }
  for (int u = 0; u < UR; ++u)
    for (int c = 0; c < CC; ++c) acc[u][c0 + c - cg] = s[u][c];
}

// The low halves, then the high halves, for CC outputs from c0.
template <class T, int UR, int CC>
inline void dv_both(const T* at, const T* G, int64_t c0, int64_t Bp, vec32<T> (*lo)[16], vec32<T> (*hi)[16],
                    int64_t cg) {
  dv_half<T, UR, CC>(at, G, c0, Bp, 0, lo, cg);
  dv_half<T, UR, CC>(at, G, c0, Bp, VecN<T, 32>::W, hi, cg);
}

// Both halves for outputs [c0, c0 + n), n <= kDvTile (five outputs of two units: 10
// accumulators, two activation vectors and a row of G in the 16 registers).
constexpr int64_t kDvTile = 5;
template <class T, int UR>
inline void dv_halves(const T* at, const T* G, int64_t c0, int64_t n, int64_t Bp, vec32<T> (*lo)[16],
                      vec32<T> (*hi)[16], int64_t cg) {
  switch (n) {
    case 1: dv_both<T, UR, 1>(at, G, c0, Bp, lo, hi, cg); break;
    case 2: dv_both<T, UR, 2>(at, G, c0, Bp, lo, hi, cg); break;
    case 3: dv_both<T, UR, 3>(at, G, c0, Bp, lo, hi, cg); break;
    case 4: dv_both<T, UR, 4>(at, G, c0, Bp, lo, hi, cg); break;
    case 5: dv_both<T, UR, 5>(at, G, c0, Bp, lo, hi, cg); break;
    default: break;
  }
}

// dv of UR units (rows of dv k apart): up to sixteen outputs at a time, computed in even tiles
// of up to kDvTile outputs (2 x 5 accumulators, every lane a chain: enough to hide the latency),
// then finished eight at a time (hsum8).
template <class T, int UR>
void dv_units(const T* at, const T* G, int64_t k, int64_t Bp, T* dv) {
  vec32<T> lo[UR][16], hi[UR][16];
  for (int64_t cg = 0; cg < k; cg += 16) {
    const int64_t n = std::min<int64_t>(16, k - cg), tiles = (n + kDvTile - 1) / kDvTile;
    for (int64_t t = 0, c0 = cg; t < tiles; ++t) {
      const int64_t cc = (n - (c0 - cg) + (tiles - t) - 1) / (tiles - t);  // the rest, evenly
      dv_halves<T, UR>(at, G, c0, cc, Bp, lo, hi, cg);
      c0 += cc;
    }
    for (int u = 0; u < UR; ++u) {
      for (int64_t c = n; c < round_up(n, 8); ++c) lo[u][c] = hi[u][c] = vec32<T>{};
      for (int64_t c8 = 0; c8 < n; c8 += 8) {
        T out[8];
        finish_dv<T, 8>(lo[u] + c8, hi[u] + c8, 0, out);
        std::memcpy(dv + u * k + cg + c8, out, sizeof(T) * std::min<int64_t>(8, n - c8));
      }
    }
  }
}
#endif

// The backward of n consecutive units of one network (rows of at and dz Bp apart, of v and dv
// k apart) from the gradient G (k x Bp) of its outputs: dv and dz of each unit, the same bits
// on every target.
template <class T>
void units_backward(const T* at, const T* G, const T* v, int64_t n, int64_t k, int64_t Bp, T* dz, T* dv,
                    bool use_relu) {
#if PYIREG_VEC_BYTES == 64
  for (int64_t i = 0; i < n; ++i) unit_backward(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, dv + i * k, use_relu);
#else
  constexpr int UR = 4;
  int64_t i = 0;
  for (; i + UR <= n; i += UR) dz_units<T, UR>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu);
  switch (n - i) {
    case 1: dz_units<T, 1>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    case 2: dz_units<T, 2>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    case 3: dz_units<T, 3>(at + i * Bp, G, v + i * k, k, Bp, dz + i * Bp, use_relu); break;
    default: break;
  }
  for (i = 0; i + 2 <= n; i += 2) dv_units<T, 2>(at + i * Bp, G, k, Bp, dv + i * k);
  if (i < n) dv_units<T, 1>(at + i * Bp, G, k, Bp, dv + i * k);
#endif
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
