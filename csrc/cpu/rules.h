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

#include "cpu/cpu.h"
#include "cpu/simd.h"

namespace pyireg {
namespace PYIREG_ISA {

// The rows' driver: body(w, s, g) updates one vector of weights w (and their state s) from the
// gradient g. Whole vectors of the target's width, then the row's last elements through
// zero-padded copies, so every element gets the same instructions, and the same bits, wherever
// a row is cut (the fused step's tiles, the unfused rows, another target's vector width).
// STATE: 0 the state is not touched, 1 read only, 2 read and written. The rows never alias,
// which the compiler cannot know.
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
    const size_t bytes = sizeof(T) * static_cast<size_t>(n - i);
    T wt[W] = {}, stt[W] = {}, gt[W] = {};
    std::memcpy(wt, w + i, bytes);
    if (STATE) std::memcpy(stt, s + i, bytes);
    std::memcpy(gt, g + i, bytes);
    vec<T> wi = ld(wt), si = ld(stt);
    body(wi, si, ld(gt));
    st(wt, wi);
    std::memcpy(w + i, wt, bytes);
    if (STATE == 2) {
      st(stt, si);
      std::memcpy(s + i, stt, bytes);
    }
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

}  // namespace PYIREG_ISA
}  // namespace pyireg
