// Update rules of the fused training step. A rule is a type with
//   kCoefs                      coefficients per row (per unit and layer),
//   prepare(net, u, v, d, k, cu, cv)
//                               the coefficients of unit h's U row (cu) and V row (cv), computed
//                               from the weights before the step (u = U[h], v = V[h]),
//   apply(len, w, s, g, c)      the update of len weights w (with their state s) from the
//                               gradient g and the row's coefficients c.
// The training step calls prepare for the rows of a chunk, then apply to them once the chunk's
// gradients are in scratch (U rows after the dU product, V rows after the dV pass). A new
// optimizer is a new rule here plus one case in kernels.h's rule switch; the GEMM does not
// change. Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h). The
// coefficient and element formulas are engine/rule_coefs.h's (host and device); this file adds
// the SIMD row drivers.
#pragma once

#include <cstring>
#include <type_traits>

#include "cpu/cpu.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// The rows' driver: body(w, s, g) updates one vector of weights w (and their state s) from the
// gradient g. Whole vectors of the target's width, then the row's last elements through partial
// loads and stores (ld_part, st_part: zeros in the lanes past the end), so every element gets the
// same instructions, and the same bits, wherever a row is cut (the fused step's tiles, the unfused
// rows, another target's vector width). STATE: 0 the state is not touched, 1 read only, 2 read
// and written. The rows never alias, which the compiler cannot know.
template <int STATE, class T, class Body>
inline void update_rows(int64_t n, T* __restrict__ w, T* __restrict__ s, const T* __restrict__ g, Body body) {
  constexpr int W = VecOf<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    vec<T> wi = ld(w + i), si = STATE ? ld(s + i) : vec<T>{};
    body(wi, si, ld(g + i));
    st(w + i, wi);
    if (STATE == 2) st(s + i, si);
  }
  if (i < n) {
    vec<T> wi = ld_part(w + i, n - i), si = STATE ? ld_part(s + i, n - i) : vec<T>{};
    body(wi, si, ld_part(g + i, n - i));
    st_part(w + i, n - i, wi);
    if (STATE == 2) st_part(s + i, n - i, si);
  }
}

// torch.optim.SGD(momentum=m, dampening=0, nesterov=False, weight_decay=wd) on n weights:
//   g = grad + wd * w;  buf = m * buf + g;  w -= lr * buf   (buf starts at zero, so the first
// step gives buf = g exactly, as torch's clone of the first gradient does). With m = 0 torch
// keeps no buffer: w -= lr * g, and the buffer is left as it is (a later step with m > 0 then
// continues from it, as torch's kept buffer does; one that never had m > 0 is still zero, which
// gives torch's clone).
template <class T>
inline void sgd_rows(int64_t n, T* w, T* buf, const T* g, T lr, T m, T wd) {
  const vec<T> vlr = splat(lr), vm = splat(m), vwd = splat(wd);
  if (m == T(0)) {
    update_rows<0>(n, w, buf, g, [&](vec<T>& wi, vec<T>&, vec<T> gi) { sgd_update(wi, gi, vlr, vwd); });
    return;
  }
  update_rows<2>(n, w, buf, g,
                 [&](vec<T>& wi, vec<T>& bi, vec<T> gi) { momentum_sgd_update(wi, bi, gi, vlr, vm, vwd); });
}

template <class T>
struct MomentumSgdRule {
  static constexpr int kCoefs = MomentumSgdCoefs<T>::kCoefs;  // lr, momentum, weight decay of the unit's network
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }  // momentum buffers
  T* state_V() const { return r.state_V; }
  bool uses_state(int64_t net) const { return r.momentum[net] != T(0); }
  void prepare(int64_t net, const T* u, const T* v, int64_t d, int64_t k, T* cu, T* cv) const {
    MomentumSgdCoefs<T>::prepare(r, net, u, v, d, k, cu, cv);
  }
  static void apply(int64_t len, T* w, T* s, const T* g, const T* c) { sgd_rows(len, w, s, g, c[0], c[1], c[2]); }
};

// ---------------------------------------------------------------- Path-SGD and DDP-SGD
// sq_norm (a row's squared norm in double, index order) and inverse_kappa (1 / kappa with the
// zero policy) are engine/rule_coefs.h's, shared with device code.

// The Path-SGD row update: torch.optim.SGD's momentum recursion on the preconditioned gradient
// of the weight-decayed loss,
//   g = (grad + wd * w) * q;  buf = m * buf + g;  w -= lr * buf      (q = 1 / kappa of the row)
// (with q = 1 this is sgd_rows, but computed with one more rounding, so it is kept separate).
template <class T>
inline void path_sgd_rows(int64_t n, T* w, T* buf, const T* g, T lr, T m, T wd, T q) {
  const vec<T> vlr = splat(lr), vm = splat(m), vwd = splat(wd), vq = splat(q);
  update_rows<2>(n, w, buf, g,
                 [&](vec<T>& wi, vec<T>& bi, vec<T> gi) { path_sgd_update(wi, bi, gi, vlr, vm, vwd, vq); });
}

// Path-SGD (Neyshabur, Salakhutdinov & Srebro 2015) for y = sum_h v_h act(<u_h, x>): the
// steepest-descent step of the loss under the diagonal quadratic approximation of the squared
// l2 path norm phi_2^2 = sum_h ||u_h||^2 ||v_h||^2, whose half-curvature along one weight is
//   kappa(U[h, i]) = 1/2 d^2 phi_2^2 / dU[h, i]^2 = ||v_h||^2   (the same for every i),
//   kappa(V[h, j]) = ||u_h||^2                                   (the same for every j),
// taken from the weights before the step (prepare runs before any row of the unit is updated).
// The step of the fused training pass and of apply_update is path_sgd_rows with q = 1 / kappa
// (inverse_kappa: 0 where kappa = 0). See src/pyireg/optim/path_sgd.py for the derivation and the
// invariance under u_h -> c u_h, v_h -> v_h / c.
template <class T>
struct PathSgdRule {
  static constexpr int kCoefs = PathSgdCoefs<T>::kCoefs;  // lr, momentum, weight decay; 1 / kappa
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }  // momentum buffers of the preconditioned gradient
  T* state_V() const { return r.state_V; }
  void prepare(int64_t net, const T* u, const T* v, int64_t d, int64_t k, T* cu, T* cv) const {
    PathSgdCoefs<T>::prepare(r, net, u, v, d, k, cu, cv);
  }
  static void apply(int64_t len, T* w, T* s, const T* g, const T* c) {
    path_sgd_rows(len, w, s, g, c[0], c[1], c[2], c[3]);
  }
};

// DDP-SGD (Neyshabur, Tomioka, Salakhutdinov & Srebro 2016): w -= lr * (grad + wd * w) * q with
// a per-weight q = 1 / kappa that depends on the data, computed before the step from the batch
// and the weights by the engine's ddp_scale (kernels.h) and held in the rule's state arrays
// (state_U: S x d, state_V: S x k; read only here). No momentum: the state holds the scaling.
// At alpha = 1 the scaling is Path-SGD's and this update is path_sgd_rows with m = 0 (the same
// bits: m * buf + g is g exactly).
template <class T>
struct DdpSgdRule {
  static constexpr int kCoefs = DdpSgdCoefs<T>::kCoefs;  // lr, weight decay of the unit's network
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }  // 1 / kappa of every weight of U
  T* state_V() const { return r.state_V; }  // 1 / kappa of every weight of V
  void prepare(int64_t net, const T* u, const T* v, int64_t d, int64_t k, T* cu, T* cv) const {
    DdpSgdCoefs<T>::prepare(r, net, u, v, d, k, cu, cv);
  }
  static void apply(int64_t n, T* w, T* s, const T* g, const T* c) {
    const vec<T> vlr = splat(c[0]), vwd = splat(c[1]);
    update_rows<1>(n, w, s, g, [&](vec<T>& wi, vec<T>& qi, vec<T> gi) { ddp_sgd_update(wi, qi, gi, vlr, vwd); });
  }
};

// ---------------------------------------------------------------- Nesterov momentum
// torch.optim.SGD(momentum=m, nesterov=True, weight_decay=wd): g' = grad + wd w;
// buf = m buf + g' (buf = g' on the first step, from zero); w -= lr (g' + m buf).
template <class T>
struct NesterovSgdRule {
  static constexpr int kCoefs = MomentumSgdCoefs<T>::kCoefs;  // lr, momentum, weight decay
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }  // momentum buffers
  T* state_V() const { return r.state_V; }
  void prepare(int64_t net, const T* u, const T* v, int64_t d, int64_t k, T* cu, T* cv) const {
    MomentumSgdCoefs<T>::prepare(r, net, u, v, d, k, cu, cv);
  }
  static void apply(int64_t len, T* w, T* s, const T* g, const T* c) {
    const vec<T> vlr = splat(c[0]), vm = splat(c[1]), vwd = splat(c[2]);
    update_rows<2>(len, w, s, g,
                   [&](vec<T>& wi, vec<T>& bi, vec<T> gi) { nesterov_sgd_update(wi, bi, gi, vlr, vm, vwd); });
  }
};

// ---------------------------------------------------------------- Adam and AdamW
// Square root lane by lane (IEEE square roots are correctly rounded: the same bits on every target).
template <class V>
inline V lane_sqrt(V x) {
  using E = elem_t<V>;
  for (int i = 0; i < lanes<V>(); ++i) {
    if constexpr (std::is_same<E, float>::value)
      x[i] = __builtin_sqrtf(x[i]);
    else
      x[i] = __builtin_sqrt(x[i]);
  }
  return x;
}

// update_rows with two state arrays (s1, s2), both read and written; the same tail handling.
template <class T, class Body>
inline void update_rows2(int64_t n, T* __restrict__ w, T* __restrict__ s1, T* __restrict__ s2, const T* __restrict__ g,
                         Body body) {
  constexpr int W = VecOf<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    vec<T> wi = ld(w + i), ai = ld(s1 + i), bi = ld(s2 + i);
    body(wi, ai, bi, ld(g + i));
    st(w + i, wi);
    st(s1 + i, ai);
    st(s2 + i, bi);
  }
  if (i < n) {
    vec<T> wi = ld_part(w + i, n - i), ai = ld_part(s1 + i, n - i), bi = ld_part(s2 + i, n - i);
    body(wi, ai, bi, ld_part(g + i, n - i));
    st_part(w + i, n - i, wi);
    st_part(s1 + i, n - i, ai);
    st_part(s2 + i, n - i, bi);
  }
}

// torch.optim.Adam (DECOUPLED = false: weight decay as an L2 term of the gradient) and
// torch.optim.AdamW (DECOUPLED = true: w *= 1 - lr wd before the moment update). First moments in
// state_U/V, second moments in state2_U/V; coefficients from AdamCoefs (engine/rule_coefs.h).
template <class T, bool DECOUPLED>
struct AdamRule {
  static constexpr int kCoefs = AdamCoefs<T, DECOUPLED>::kCoefs;
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }
  T* state_V() const { return r.state_V; }
  T* state2_U() const { return r.state2_U; }
  T* state2_V() const { return r.state2_V; }
  void prepare(int64_t net, const T* u, const T* v, int64_t d, int64_t k, T* cu, T* cv) const {
    AdamCoefs<T, DECOUPLED>::prepare(r, net, u, v, d, k, cu, cv);
  }
  static void apply2(int64_t len, T* w, T* m, T* v, const T* g, const T* c) {
    const vec<T> c0 = splat(c[0]), c1 = splat(c[1]), c2 = splat(c[2]), c3 = splat(c[3]), c4 = splat(c[4]),
                 c5 = splat(c[5]), c6 = splat(c[6]);
    update_rows2(len, w, m, v, g, [&](vec<T>& wi, vec<T>& mi, vec<T>& vi, vec<T> gi) {
      adam_update<DECOUPLED>(wi, mi, vi, gi, c0, c1, c2, c3, c4, c5, c6, [](vec<T> x) { return lane_sqrt(x); });
    });
  }
};

// ---------------------------------------------------------------- the rows of a rule
// Rules with a second state array (Adam's) declare state2_U; the others update from one.
template <class R, class = void>
struct HasSecondState : std::false_type {};
template <class R>
struct HasSecondState<R, std::void_t<decltype(&R::state2_U)>> : std::true_type {};

// The update of row h (length len: d for a row of U, k for a row of V) of weights w from the
// gradient g and the row's coefficients c; the row's state is row h of the rule's state arrays.
template <class R, class T>
inline void apply_row(const R& rule, bool layer_V, int64_t h, int64_t len, T* w, const T* g, const T* c) {
  T* s = (layer_V ? rule.state_V() : rule.state_U()) + h * len;
  if constexpr (HasSecondState<R>::value)
    R::apply2(len, w, s, (layer_V ? rule.state2_V() : rule.state2_U()) + h * len, g, c);
  else
    R::apply(len, w, s, g, c);
}

// Rules whose state a network may leave untouched (momentum SGD with momentum 0) say so by
// uses_state(net); the others read their state for every network.
template <class R, class = void>
struct HasUsesState : std::false_type {};
template <class R>
struct HasUsesState<R, std::void_t<decltype(&R::uses_state)>> : std::true_type {};

// Prefetch of the cache lines of row h of U and of its state arrays (len weights each), issued
// by the training step while it computes unit h's backward (a compute-bound pass), so that the
// rule's pass over the chunk finds them in cache: on an AVX-512 Xeon the dense step's rule pass
// took 33.5 ms without it, 22.8 ms with it (one thread, benchmarks/kernels/README.md).
template <class R, class T>
inline void prefetch_row(const R& rule, int64_t net, int64_t h, int64_t len, const T* U) {
  auto lines = [&](const T* row) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(row + h * len), e = b + sizeof(T) * static_cast<uintptr_t>(len);
    for (uintptr_t a = b & ~uintptr_t(63); a < e; a += 64) __builtin_prefetch(reinterpret_cast<const void*>(a), 1, 3);
  };
  lines(U);
  if constexpr (HasUsesState<R>::value)
    if (!rule.uses_state(net)) return;
  lines(rule.state_U());
  if constexpr (HasSecondState<R>::value) lines(rule.state2_U());
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
