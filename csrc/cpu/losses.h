// Losses of the CPU kernels. A loss works on one network's outputs L (k x Bp, class-major,
// samples contiguous, Bp the batch padded to the SIMD width) for B samples: it adds the summed
// loss to *loss_sum, and, with grad_scale > 0, overwrites L by grad_scale * dloss/dL and zeroes
// the padding columns.
// Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h).
#pragma once

#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu/cpu.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// exp of every lane of a float vector (any width): x = n ln2 + r with n = round(x log2(e)) and
// |r| <= ln2 / 2, exp(r) by its Taylor polynomial of degree 7 (truncation below 3e-9
// relative) in Horner form, times 2^n built in the exponent bits (in two halves, so that
// results in the subnormal range and up to the largest float come out right). Lanes below -104
// give 0, above 88.73 inf; NaN stays NaN. Every lane is computed
// on its own by the same instructions, so any vector width gives the same bits.
template <class VT>
inline VT exp_lanes(VT x) {
  typedef typename VecN<int32_t, static_cast<int>(sizeof(VT))>::type VI;
  const VT log2e = splatv<VT>(1.44269504088896341f);
  const VT round_magic = splatv<VT>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const VT ln2_hi = splatv<VT>(0.693359375f), ln2_lo = splatv<VT>(-2.12194440e-4f);
  const VT lo = splatv<VT>(-104.0f), hi = splatv<VT>(88.73f);
  const VT xc = x < lo ? lo : (x > hi ? hi : x);
  const VT n = (xc * log2e + round_magic) - round_magic;
  VT r = xc - n * ln2_hi;
  r = r - n * ln2_lo;
  VT p = splatv<VT>(1.0f / 5040);
  p = p * r + splatv<VT>(1.0f / 720);
  p = p * r + splatv<VT>(1.0f / 120);
  p = p * r + splatv<VT>(1.0f / 24);
  p = p * r + splatv<VT>(1.0f / 6);
  p = p * r + splatv<VT>(0.5f);
  p = p * r + splatv<VT>(1.0f);
  p = p * r + splatv<VT>(1.0f);
  // 2^n as 2^n1 * 2^n2 with both halves normal floats (n runs from -150 to 128)
  const VI ni = __builtin_convertvector(n, VI);
  const VI n1 = ni >> 1, e1 = (n1 + 127) << 23, e2 = (ni - n1 + 127) << 23;
  VT s1, s2;
  std::memcpy(&s1, &e1, sizeof s1);
  std::memcpy(&s2, &e2, sizeof s2);
  VT y = (p * s1) * s2;
  y = x < lo ? VT{} : y;
  y = x > hi ? splatv<VT>(__builtin_inff()) : y;
  return x != x ? x : y;
}

// Softmax cross-entropy of the samples [b0, b0 + lanes of VT) of L (float), vectorized across
// samples: per sample the same operations as the scalar loop below, but exp is exp_lanes.
template <class VT>
inline void softmax_ce_lanes(int64_t k, int64_t B, int64_t Bp, int64_t b0, float* L, const int32_t* y, float grad_scale,
                             double& total, int64_t& wrong) {
  typedef typename VecN<int32_t, static_cast<int>(sizeof(VT))>::type VI;
  constexpr int W = lanes<VT>();
  VT m = ldv<VT>(L + b0);
  VI arg{};
  for (int64_t c = 1; c < k; ++c) {
    const VT l = ldv<VT>(L + c * Bp + b0);
    const auto gt = l > m;
    m = gt ? l : m;
    arg = gt ? static_cast<int32_t>(c) : arg;
  }
  int32_t ya[W];
  float la[W];
  for (int e = 0; e < W; ++e) {
    const int64_t b = b0 + e;
    ya[e] = b < B ? y[b] : 0;  // padding samples: any class, never counted
    la[e] = L[ya[e] * Bp + b];
  }
  const VI yl = ldv<VI>(ya);
  const VT ly = ldv<VT>(la);
  VT se{};
  for (int64_t c = 0; c < k; ++c) {
    const VT ex = exp_lanes(ldv<VT>(L + c * Bp + b0) - m);
    if (grad_scale > 0) st(L + c * Bp + b0, ex);  // each exponential is computed once
    se += ex;
  }
  for (int e = 0; e < W && b0 + e < B; ++e) {
    const float lb = std::log(se[e]) + m[e] - ly[e];
    total += static_cast<double>(lb);
    if (arg[e] != yl[e] || !std::isfinite(lb)) ++wrong;
  }
  if (grad_scale > 0) {
    const VT inv = splatv<VT>(1.0f) / se, gs = splatv<VT>(grad_scale);
    for (int64_t c = 0; c < k; ++c) {
      const VT one = yl == static_cast<int32_t>(c) ? splatv<VT>(1.0f) : VT{};
      st(L + c * Bp + b0, gs * (ldv<VT>(L + c * Bp + b0) * inv - one));
    }
  }
}

// Softmax cross-entropy with integer labels. Also counts wrong predictions in *errors (a sample
// with a non-finite loss counts as wrong, so a diverged network shows as wrong). In float the
// samples are taken a vector at a time (exp_lanes: within 1 ulp of exp; the libm exp of a
// sample at a time made the loss 18% of the step of a sweep of 16,384 networks); in double
// one at a time with std::exp.
template <class T>
void softmax_ce(int64_t k, int64_t B, int64_t Bp, T* L, const int32_t* y, T grad_scale, double* loss_sum,
                int64_t* errors) {
  double total = 0;
  int64_t wrong = 0;
  if constexpr (std::is_same<T, float>::value) {
    constexpr int W = VecOf<T>::W, W32 = VecN<T, 32>::W;
    int64_t b0 = 0;
    for (; b0 + W <= Bp; b0 += W) softmax_ce_lanes<vec<T>>(k, B, Bp, b0, L, y, grad_scale, total, wrong);
    for (; b0 < Bp; b0 += W32) softmax_ce_lanes<vec32<T>>(k, B, Bp, b0, L, y, grad_scale, total, wrong);
  } else {
    for (int64_t b = 0; b < B; ++b) {
      T m = L[b];
      int64_t arg = 0;
      for (int64_t c = 1; c < k; ++c)
        if (L[c * Bp + b] > m) {
          m = L[c * Bp + b];
          arg = c;
        }
      const int32_t yb = y[b];
      const T ly = L[yb * Bp + b];
      T se = 0;
      for (int64_t c = 0; c < k; ++c) {
        const T e = std::exp(L[c * Bp + b] - m);
        if (grad_scale > 0) L[c * Bp + b] = e;  // each exponential is computed once
        se += e;
      }
      const T lb = std::log(se) + m - ly;
      total += static_cast<double>(lb);
      if (arg != yb || !std::isfinite(lb)) ++wrong;
      if (grad_scale > 0) {
        const T inv = T(1) / se;
        for (int64_t c = 0; c < k; ++c) L[c * Bp + b] = grad_scale * (L[c * Bp + b] * inv - (c == yb ? T(1) : T(0)));
      }
    }
  }
  if (grad_scale > 0)
    for (int64_t c = 0; c < k; ++c)
      for (int64_t b = B; b < Bp; ++b) L[c * Bp + b] = T(0);
  if (loss_sum) *loss_sum += total;
  if (errors) *errors += wrong;
}

// Squared loss 1/2 sum_j w_bj (L_jb - Y_bj)^2 per sample, Y and the optional entry weights Wt
// (null = all ones) stored B x k. The gradient is grad_scale * w_bj (L_jb - Y_bj). Counts in
// *errors the samples whose largest output is not at their largest target (the classification
// error for one-hot targets) or whose loss is not finite.
template <class T>
void squared(int64_t k, int64_t B, int64_t Bp, T* L, const T* Y, const T* Wt, T grad_scale, double* loss_sum,
             int64_t* errors) {
  double total = 0;
  int64_t wrong = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t arg_out = 0, arg_y = 0;  // before L is overwritten by the gradient
    if (errors)
      for (int64_t c = 1; c < k; ++c) {
        if (L[c * Bp + b] > L[arg_out * Bp + b]) arg_out = c;
        if (Y[b * k + c] > Y[b * k + arg_y]) arg_y = c;
      }
    double lb = 0;
    for (int64_t c = 0; c < k; ++c) {
      const T r = L[c * Bp + b] - Y[b * k + c];
      const T w = Wt ? Wt[b * k + c] : T(1);
      lb += static_cast<double>(w) * static_cast<double>(r) * static_cast<double>(r);
      if (grad_scale > 0) L[c * Bp + b] = grad_scale * (w * r);
    }
    total += 0.5 * lb;
    if (errors && (arg_out != arg_y || !std::isfinite(lb))) ++wrong;
  }
  if (grad_scale > 0)
    for (int64_t c = 0; c < k; ++c)
      for (int64_t b = B; b < Bp; ++b) L[c * Bp + b] = T(0);
  if (loss_sum) *loss_sum += total;
  if (errors) *errors += wrong;
}

// The loss of the targets' kind, on samples b0 .. b0 + B of the targets.
template <class T>
void apply_loss(const Targets<T>& t, int64_t b0, int64_t k, int64_t B, int64_t Bp, T* L, T grad_scale, double* loss_sum,
                int64_t* errors) {
  if (t.loss == Loss::cross_entropy)
    softmax_ce(k, B, Bp, L, t.labels + b0, grad_scale, loss_sum, errors);
  else
    squared(k, B, Bp, L, t.values + b0 * k, t.weights ? t.weights + b0 * k : nullptr, grad_scale, loss_sum, errors);
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
