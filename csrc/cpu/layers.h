// Per-unit passes of the CPU kernels around the GEMMs: packing the batch, the segmented second
// layer (a network's units into its k outputs) and one unit's backward (dV row, dZ row with the
// activation mask).
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

// One unit's backward for outputs [c0, c0 + CC): dv[c] = <at, G[c]>, dz += sum_c v[c] G[c];
// on the last output group the activation mask is applied.
// dv is summed in 32-byte lanes on every target (the same bits everywhere), then across them.
template <class T, int CC>
void unit_backward_group(const T* at, const T* G, const T* v, int64_t c0, int64_t Bp, T* dz, T* dv, bool first,
                         bool last, bool use_relu) {
  constexpr int W = VecN<T, 32>::W;
  vec32<T> dvacc[CC];
  for (int c = 0; c < CC; ++c) dvacc[c] = vec32<T>{};
  int64_t j = 0;
  // two blocks of columns a step: two independent dz chains (each a sum over the outputs)
  for (; j + 2 * W <= Bp; j += 2 * W) {
    const vec32<T> a0 = ld32(at + j), a1 = ld32(at + j + W);
    vec32<T> da0 = first ? vec32<T>{} : ld32(dz + j), da1 = first ? vec32<T>{} : ld32(dz + j + W);
    for (int c = 0; c < CC; ++c) {
      const vec32<T> g0 = ld32(G + (c0 + c) * Bp + j), g1 = ld32(G + (c0 + c) * Bp + j + W);
      const vec32<T> vc = splat32(v[c0 + c]);
      dvacc[c] += a0 * g0;
      dvacc[c] += a1 * g1;
      da0 += vc * g0;
      da1 += vc * g1;
    }
    if (last && use_relu) {
      da0 = a0 > 0 ? da0 : vec32<T>{};
      da1 = a1 > 0 ? da1 : vec32<T>{};
    }
    st(dz + j, da0);
    st(dz + j + W, da1);
  }
  for (; j < Bp; j += W) {
    const vec32<T> a = ld32(at + j);
    vec32<T> da = first ? vec32<T>{} : ld32(dz + j);
    for (int c = 0; c < CC; ++c) {
      const vec32<T> g = ld32(G + (c0 + c) * Bp + j);
      dvacc[c] += a * g;
      da += splat32(v[c0 + c]) * g;
    }
    if (last && use_relu) da = a > 0 ? da : vec32<T>{};
    st(dz + j, da);
  }
  int c = 0;
  if constexpr (std::is_same<T, float>::value)
    for (; c + 8 <= CC; c += 8) hsum8(dvacc + c, dv + c0 + c);
  for (; c < CC; ++c) dv[c0 + c] = hsum<T>(dvacc[c]);
}

// Unit h's backward from the gradient G (k x Bp) of its network's outputs: dv (k) and dz (Bp).
template <class T>
void unit_backward(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, T* dv, bool use_relu) {
  for (int64_t c0 = 0; c0 < k; c0 += kClassGroup) {
    const bool first = c0 == 0, last = c0 + kClassGroup >= k;
    switch (std::min(kClassGroup, k - c0)) {
#define PYIREG_CASE(n) \
  case n: unit_backward_group<T, n>(at, G, v, c0, Bp, dz, dv, first, last, use_relu); break;
      PYIREG_CLASS_CASES(PYIREG_CASE)
#undef PYIREG_CASE
      default: break;
    }
  }
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
