// The update rules written once, for host and device code: the per-row coefficients each rule
// derives from the weights before a step (prepare), and the per-element update formulas. The
// formulas are templates on the value type V, so the CPU rules (cpu/rules.h) call them on SIMD
// vectors and a GPU kernel on scalars: the same expression, the same rounding (FMA contraction
// aside, which the compiler decides per target).
//
// Rules (see cpu/rules.h and src/pyireg/optim/ for the derivations):
//   momentum_sgd  torch.optim.SGD(momentum=m, weight_decay=wd): g = grad + wd w; buf = m buf + g;
//                 w -= lr buf (with m = 0: w -= lr g, the buffer untouched).
//   path_sgd      the same recursion on (grad + wd w) q, q = 1 / kappa of the row:
//                 kappa(u_h) = ||v_h||^2, kappa(v_h) = ||u_h||^2, from the weights before the step.
//   ddp_sgd       w -= lr (grad + wd w) q with a per-weight q = 1 / kappa from the batch (the
//                 backend's ddp_scale: ddp_kappa_U, ddp_kappa_V below), no momentum.
//   nesterov_sgd  torch.optim.SGD(momentum=m, nesterov=True, weight_decay=wd): g = grad + wd w;
//                 buf = m buf + g; w -= lr (g + m buf).
//   adam, adamw   torch.optim.Adam (L2: g = grad + wd w) and torch.optim.AdamW (decoupled:
//                 w *= 1 - lr wd) with bias correction by the network's step number t:
//                 m += (g - m)(1 - b1); v = b2 v + (1 - b2) g^2;
//                 w -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
//
// Host and device: PYIREG_HD is __host__ __device__ under nvcc and empty otherwise. No SIMD types,
// no std:: calls that device code lacks. Everything is in an unnamed namespace: every translation
// unit (the CPU kernels are compiled once per instruction set) gets its own copy, so the linker
// never swaps one target's code for another's.
#pragma once

#include <cfloat>
#include <cstdint>
#include <math.h>
#include <type_traits>

#include "engine/types.h"

#if defined(__CUDACC__)
#define PYIREG_HD __host__ __device__
#else
#define PYIREG_HD
#endif

namespace pyireg {

// Most coefficients per row an update rule may use.
constexpr int kMaxRuleCoefs = 8;

namespace {

template <class T>
struct MaxFinite;
template <>
struct MaxFinite<float> {
  static constexpr double value = FLT_MAX;
};
template <>
struct MaxFinite<double> {
  static constexpr double value = DBL_MAX;
};

// Squared l2 norm of a row, summed in double in index order: every caller (the fused step's
// prepare, apply_update's prepare, the DDP scaling, balance, normalize_units and the norm
// measures, on the CPU and on a GPU) gets the same bits for the same row. A float32 row's
// products are exact in double, so a fused and an unfused multiply-add round alike and the
// compiler may contract or not. A float64 row's terms are fused explicitly (fma, correctly
// rounded on every target): a translation unit without -mfma does not contract, a GPU compiler
// does, and the two rounded differently.
template <class T>
PYIREG_HD inline double sq_norm(const T* r, int64_t n) {
  double s = 0;
  if constexpr (std::is_same<T, float>::value) {
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(r[i]) * static_cast<double>(r[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) s = fma(static_cast<double>(r[i]), static_cast<double>(r[i]), s);
  }
  return s;
}

// Whether x is a normal double (not 0, subnormal, inf or NaN): where the plain sums of squares
// and their products and quotients below are kept.
PYIREG_HD inline bool is_normal(double x) { return x >= DBL_MIN && x <= DBL_MAX; }

// ||r||_2 in double. sqrt(sq_norm) wherever the sum of squares is a normal double, which is
// every float32 row (its squares span 1e-90 .. 1e77); a float64 row whose squares overflow or
// underflow (entries above about 1e154 or below 1e-154) is scaled by its largest |r_i| first,
// so its norm is right wherever the norm itself fits a double. NaN and inf propagate.
template <class T>
PYIREG_HD inline double row_norm(const T* r, int64_t n) {
  const double s = sq_norm(r, n);
  if (is_normal(s) || s != s) return sqrt(s);  // normal, or NaN (fmax would drop it)
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = fmax(m, fabs(static_cast<double>(r[i])));
  if (m == 0 || !(m <= DBL_MAX)) return m == 0 ? 0.0 : sqrt(s);
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double q = static_cast<double>(r[i]) / m;
    t = fma(q, q, t);
  }
  return m * sqrt(t);
}

// ||u|| ||v|| of one unit from its squared norms u2, v2 (sq_norm): sqrt(u2 v2) where that
// product is a normal double (the common case's bits), else from row_norm (a float64 unit with
// u = 1e160, v = 1e-160 gave NaN: inf x 0).
template <class T>
PYIREG_HD inline double norm_product(const T* u, int64_t d, const T* v, int64_t k, double u2, double v2) {
  const double p = u2 * v2;
  if (is_normal(p)) return sqrt(p);
  return row_norm(u, d) * row_norm(v, k);  // also a zero row's 0
}

// A network's path_l2 = sqrt(sum_h (||u_h|| ||v_h||)^2) over its units [h0, h1), scaled by the
// largest term: the measures' fallback where the plain sum of squares is not a normal double.
template <class T>
PYIREG_HD inline double path_l2_scaled(const T* U, const T* V, int64_t h0, int64_t h1, int64_t d, int64_t k) {
  double m = 0;
  for (int64_t h = h0; h < h1; ++h) {
    const double uv = norm_product(U + h * d, d, V + h * k, k, sq_norm(U + h * d, d), sq_norm(V + h * k, k));
    if (uv != uv) return uv;
    m = fmax(m, uv);
  }
  if (m == 0 || !(m <= DBL_MAX)) return m;
  double t = 0;
  for (int64_t h = h0; h < h1; ++h) {
    const double q = norm_product(U + h * d, d, V + h * k, k, sq_norm(U + h * d, d), sq_norm(V + h * k, k)) / m;
    t = fma(q, q, t);
  }
  return m * sqrt(t);
}

// The balance factor s = sqrt(||v|| / ||u||) (u -> s u, v -> v / s) of norms nu, nv > 0: the
// plain quotient where it is a normal double, else the quotient of square roots (1e170 / 1e-170
// overflowed).
PYIREG_HD inline double balance_factor(double nu, double nv) {
  const double q = nv / nu;
  return is_normal(q) ? sqrt(q) : sqrt(nv) / sqrt(nu);
}

// 1 / kappa, the per-weight scaling of Path-SGD and DDP-SGD, in the model's dtype. The zero-row
// policy: where kappa = 0 the scaling is 0 (no gradient step). For Path-SGD kappa(u_h) =
// ||v_h||^2 = 0 means v_h = 0, and then the gradient of u_h is exactly 0 as well (and likewise
// for v_h when u_h = 0): the quotient is 0 / 0, and the unit, which computes the zero function,
// is left where it is. The same 0 is used where 1/kappa overflows the dtype (kappa below about
// 3e-39 in float32, 6e-309 in float64), a unit that is numerically dead, and where kappa is
// NaN (a diverged network, which stays marked by its NaN loss).
template <class T>
PYIREG_HD inline T inverse_kappa(double kappa) {
  if (!(kappa > 0)) return T(0);
  const double q = 1.0 / kappa;
  return q <= MaxFinite<T>::value ? static_cast<T>(q) : T(0);
}

// ---------------------------------------------------------------- per-element updates
// V: a scalar or a SIMD vector of the weights w, their state s, the gradient g and the row's
// coefficients (broadcast).

// momentum_sgd with m = 0 (torch keeps no buffer): w -= lr (g + wd w).
template <class V>
PYIREG_HD inline void sgd_update(V& w, const V& g, const V& lr, const V& wd) {
  w = w - lr * (g + wd * w);
}

// momentum_sgd: buf = m buf + (g + wd w); w -= lr buf.
template <class V>
PYIREG_HD inline void momentum_sgd_update(V& w, V& buf, const V& g, const V& lr, const V& m, const V& wd) {
  buf = m * buf + (g + wd * w);
  w = w - lr * buf;
}

// path_sgd: buf = m buf + (g + wd w) q; w -= lr buf (with q = 1 momentum_sgd's formula, but with
// one more rounding, so it is kept separate).
template <class V>
PYIREG_HD inline void path_sgd_update(V& w, V& buf, const V& g, const V& lr, const V& m, const V& wd, const V& q) {
  buf = m * buf + (g + wd * w) * q;
  w = w - lr * buf;
}

// ddp_sgd: w -= lr ((g + wd w) q), q the weight's scaling (read from the rule's state).
template <class V>
PYIREG_HD inline void ddp_sgd_update(V& w, const V& q, const V& g, const V& lr, const V& wd) {
  w = w - lr * ((g + wd * w) * q);
}

// nesterov_sgd: g' = g + wd w; buf = m buf + g'; w -= lr (g' + m buf) (torch.optim.SGD's
// nesterov=True; with m = 0 it is sgd_update with one more rounding-free term: m buf = 0).
template <class V>
PYIREG_HD inline void nesterov_sgd_update(V& w, V& buf, const V& g, const V& lr, const V& m, const V& wd) {
  const V gd = g + wd * w;
  buf = m * buf + gd;
  w = w - lr * (gd + m * buf);
}

// adam / adamw, in torch.optim.Adam's order of operations (single-tensor path):
//   (adam)  g = g + wd w          (adamw) w = w * decay, decay = 1 - lr wd
//   m = m + (g - m) * one_m_b1    (torch's lerp with weight 1 - b1 < 0.5)
//   v = v * b2 + one_m_b2 * g * g
//   w = w - step_size * (m / (sqrt(v) / bc2_sqrt + eps)),  step_size = lr / (1 - b1^t)
// sqrt_: the square root of V (a scalar's or a SIMD vector's, lane by lane; IEEE square roots are
// correctly rounded, so every target gets the same bits).
template <bool DECOUPLED, class V, class Sqrt>
PYIREG_HD inline void adam_update(V& w, V& m, V& v, V g, const V& step_size, const V& wd_or_decay, const V& one_m_b1,
                                  const V& b2, const V& one_m_b2, const V& bc2_sqrt, const V& eps, Sqrt sqrt_) {
  if (DECOUPLED)
    w = w * wd_or_decay;
  else
    g = g + wd_or_decay * w;
  m = m + (g - m) * one_m_b1;
  v = v * b2 + one_m_b2 * g * g;
  w = w - step_size * (m / (sqrt_(v) / bc2_sqrt + eps));
}

// ---------------------------------------------------------------- per-row coefficients
// prepare(r, net, u, v, d, k, cu, cv): the coefficients of unit h's U row (cu) and V row (cv)
// from the weights before the step (u = U[h], v = V[h]) and the hyper-parameters of the unit's
// network `net`. A backend that has the rows' squared norms already (a GPU's row reduction) calls
// the _from_norms form.

template <class T>
struct MomentumSgdCoefs {
  static constexpr int kCoefs = 3;  // lr, momentum, weight decay of the unit's network
  PYIREG_HD static void prepare(const UpdateRule<T>& r, int64_t net, const T*, const T*, int64_t, int64_t, T* cu,
                                T* cv) {
    cu[0] = cv[0] = r.lr[net];
    cu[1] = cv[1] = r.momentum[net];
    cu[2] = cv[2] = r.weight_decay[net];
  }
};

template <class T>
struct PathSgdCoefs {
  static constexpr int kCoefs = 4;  // lr, momentum, weight decay of the unit's network; 1 / kappa
  // u2 = ||u_h||^2, v2 = ||v_h||^2 (sq_norm)
  PYIREG_HD static void prepare_from_norms(const UpdateRule<T>& r, int64_t net, double u2, double v2, T* cu, T* cv) {
    cu[0] = cv[0] = r.lr[net];
    cu[1] = cv[1] = r.momentum[net];
    cu[2] = cv[2] = r.weight_decay[net];
    cu[3] = inverse_kappa<T>(v2);
    cv[3] = inverse_kappa<T>(u2);
  }
  PYIREG_HD static void prepare(const UpdateRule<T>& r, int64_t net, const T* u, const T* v, int64_t d, int64_t k,
                                T* cu, T* cv) {
    prepare_from_norms(r, net, sq_norm(u, d), sq_norm(v, k), cu, cv);
  }
};

template <class T>
struct DdpSgdCoefs {
  static constexpr int kCoefs = 2;  // lr, weight decay of the unit's network
  PYIREG_HD static void prepare(const UpdateRule<T>& r, int64_t net, const T*, const T*, int64_t, int64_t, T* cu,
                                T* cv) {
    cu[0] = cv[0] = r.lr[net];
    cu[1] = cv[1] = r.weight_decay[net];
  }
};

// adam / adamw: the network's coefficients, the same for its U and V rows. The bias corrections
// are computed in double from t (torch computes them in Python floats) and rounded once.
template <class T, bool DECOUPLED>
struct AdamCoefs {
  static constexpr int kCoefs = 7;  // step_size, wd (adam) or 1 - lr wd (adamw), 1 - b1, b2, 1 - b2, bc2_sqrt, eps
  PYIREG_HD static void prepare(const UpdateRule<T>& r, int64_t net, const T*, const T*, int64_t, int64_t, T* cu,
                                T* cv) {
    const double lr = r.lr[net], b1 = r.beta1[net], b2 = r.beta2[net], t = static_cast<double>(r.t[net]);
    const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    T c[kCoefs];
    c[0] = static_cast<T>(lr / bc1);
    c[1] = DECOUPLED ? static_cast<T>(1.0 - lr * static_cast<double>(r.weight_decay[net])) : r.weight_decay[net];
    c[2] = static_cast<T>(1.0 - b1);
    c[3] = r.beta2[net];
    c[4] = static_cast<T>(1.0 - b2);
    c[5] = static_cast<T>(sqrt(bc2));
    c[6] = r.eps[net];
    for (int i = 0; i < kCoefs; ++i) cu[i] = cv[i] = c[i];
  }
};

// The DDP-SGD half-curvatures of unit h, with a = alpha of its network, on a batch of B samples:
// M_i = mean_b x_bi^2, z = U X^T, Ez2 = mean_b z_hb^2, Ea2 = mean_b act(z_hb)^2,
// Q_i = mean_b act'(z_hb) x_bi^2 (act' = 1{z > 0} for relu, 1 for linear):
//   kappa(U[h, i]) = ||v_h||^2 (a^2 + a (1 - a) M_i + (1 - a) Q_i)
//   kappa(V[h, j]) = a^2 ||u_h||^2 + a (1 - a) Ez2 + (1 - a) Ea2
// (src/pyireg/optim/ddp_sgd.py derives them). The scaling is inverse_kappa of these; at a = 1 it
// is Path-SGD's, bit for bit.
PYIREG_HD inline double ddp_kappa_V(double a, double u2, double Ez2, double Ea2) {
  return a * a * u2 + a * (1 - a) * Ez2 + (1 - a) * Ea2;
}
PYIREG_HD inline double ddp_kappa_U(double a, double v2, double M_i, double Q_i) {
  return v2 * (a * a + a * (1 - a) * M_i + (1 - a) * Q_i);
}

}  // namespace
}  // namespace pyireg
