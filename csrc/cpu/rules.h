// Update rules of the fused training step. A rule is a type with
//   kCoefs                      coefficients per row (per unit and layer),
//   prepare(net, u, v, d, k, cu, cv)
//                               the coefficients of unit h's U row (cu) and V row (cv), computed
//                               from the weights before the step (u = U[h], v = V[h]),
//   apply(len, w, s, g, c)      the update of len weights w (with their state s) from the
//                               gradient g and the row's coefficients c.
// The training step calls prepare for the rows of a chunk, then apply inside the epilogue of the
// dU product (U rows, while the gradient tile is in registers) and after the dV pass (V rows).
// A new optimizer is a new rule here plus one case in kernels.h's rule switch; the GEMM does not
// change. Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h).
#pragma once

#include "engine/ops.h"
#include "cpu/simd.h"

#ifndef PYIREG_ISA
#error "define PYIREG_ISA (the SIMD target's namespace) before including this header"
#endif

namespace pyireg {
namespace PYIREG_ISA {

// torch.optim.SGD(momentum=m, dampening=0, nesterov=False, weight_decay=wd) on n weights:
//   g = grad + wd * w;  buf = m * buf + g;  w -= lr * buf   (buf starts at zero, so the first
// step gives buf = g exactly, as torch's clone of the first gradient does). With m = 0 torch
// keeps no buffer: w -= lr * g, and the buffer is left as it is (a later step with m > 0 then
// continues from it, as torch's kept buffer does; one that never had m > 0 is still zero, which
// gives torch's clone). Explicitly vectorized: the rows never alias, which the compiler cannot know.
template <class T>
inline void sgd_rows(int64_t n, T* __restrict__ w, T* __restrict__ buf, const T* __restrict__ g, T lr, T m, T wd) {
  constexpr int W = VecOf<T>::W;
  const vec<T> vlr = splat(lr), vm = splat(m), vwd = splat(wd);
  int64_t i = 0;
  if (m == T(0)) {
    for (; i + W <= n; i += W) {
      const vec<T> wi = ld(w + i);
      st(w + i, wi - vlr * (ld(g + i) + vwd * wi));
    }
    for (; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
    return;
  }
  for (; i + W <= n; i += W) {
    const vec<T> wi = ld(w + i);
    const vec<T> bi = vm * ld(buf + i) + (ld(g + i) + vwd * wi);
    st(buf + i, bi);
    st(w + i, wi - vlr * bi);
  }
  for (; i < n; ++i) {
    const T gi = g[i] + wd * w[i];
    const T bi = m * buf[i] + gi;
    buf[i] = bi;
    w[i] -= lr * bi;
  }
}

template <class T>
struct MomentumSgdRule {
  static constexpr int kCoefs = 3;  // lr, momentum, weight decay of the unit's network
  const UpdateRule<T>& r;
  T* state_U() const { return r.state_U; }  // momentum buffers
  T* state_V() const { return r.state_V; }
  void prepare(int64_t net, const T*, const T*, int64_t, int64_t, T* cu, T* cv) const {
    cu[0] = cv[0] = r.lr[net];
    cu[1] = cv[1] = r.momentum[net];
    cu[2] = cv[2] = r.weight_decay[net];
  }
  static void apply(int64_t len, T* w, T* s, const T* g, const T* c) { sgd_rows(len, w, s, g, c[0], c[1], c[2]); }
};

}  // namespace PYIREG_ISA
}  // namespace pyireg
