// Losses of the CPU kernels. A loss works on one network's outputs L (k x Bp, class-major,
// samples contiguous, Bp the batch padded to the SIMD width) for B samples: it adds the summed
// loss to *loss_sum, and, with grad_scale > 0, overwrites L by grad_scale * dloss/dL and zeroes
// the padding columns.
// Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h).
#pragma once

#include <cmath>

#include "engine/ops.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// Softmax cross-entropy with integer labels. Also counts wrong predictions in *errors (a sample
// with a non-finite loss counts as wrong, so a diverged network shows as wrong).
template <class T>
void softmax_ce(int64_t k, int64_t B, int64_t Bp, T* L, const int32_t* y, T grad_scale, double* loss_sum,
                int64_t* errors) {
  double total = 0;
  int64_t wrong = 0;
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
    if (grad_scale > 0) {
      // keep exp(l - max) in place: each exponential is computed once
      for (int64_t c = 0; c < k; ++c) {
        const T e = std::exp(L[c * Bp + b] - m);
        L[c * Bp + b] = e;
        se += e;
      }
    } else {
      for (int64_t c = 0; c < k; ++c) se += std::exp(L[c * Bp + b] - m);
    }
    const T lb = std::log(se) + m - ly;
    total += static_cast<double>(lb);
    if (arg != yb || !std::isfinite(lb)) ++wrong;
    if (grad_scale > 0) {
      const T inv = T(1) / se;
      for (int64_t c = 0; c < k; ++c)
        L[c * Bp + b] = grad_scale * (L[c * Bp + b] * inv - (c == yb ? T(1) : T(0)));
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
    int64_t arg_out = 0, arg_y = 0;   // before L is overwritten by the gradient
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
void apply_loss(const Targets<T>& t, int64_t b0, int64_t k, int64_t B, int64_t Bp, T* L, T grad_scale,
                double* loss_sum, int64_t* errors) {
  if (t.loss == Loss::cross_entropy)
    softmax_ce(k, B, Bp, L, t.labels + b0, grad_scale, loss_sum, errors);
  else
    squared(k, B, Bp, L, t.values + b0 * k, t.weights ? t.weights + b0 * k : nullptr, grad_scale, loss_sum, errors);
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
