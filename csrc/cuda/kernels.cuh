// The CUDA engine's own kernels, written once in portable CUDA C++ (cuda/portable.h): compiled
// by nvcc into pyireg._cuda and by the host compiler, through the emulation, into
// pyireg._cuda_emu. The two wide products (Z = X U^T, dU = dZ^T X, and dX) are cuBLAS GEMMs in
// cuda_engine.inc; everything else is here.
//
// Layouts (row-major): U S x d, V S x k, X B x d; Z and dZ S x B (unit-major, the GEMM's
// column-major B x S); outputs, their gradients and the upstream gradient N x B x k.
// Every sum runs over a fixed index range in index order, starting at the network's own first
// unit (or sample, or class), so a network's results do not depend on its neighbours or on the
// launch configuration: alone and packed give the same bits. No float atomics.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/portable.h"
#include "engine/rule_coefs.h"

namespace pyireg {
namespace cuda_kernels {

constexpr int kThreads = 256;  // threads per block of every elementwise kernel

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }
__device__ __forceinline__ bool dfinite(double x) { return x - x == 0.0; }

// Grid-stride loop over [0, n).
#define PYIREG_FOR(i, n)                                                                 \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// out[n, b, c] = sum_{h in network n} act(Z[h, b]) V[h, c], one warp per output: lane l sums
// the units h0 + l, h0 + l + 32, ... of its network in order, then the lanes are added by a
// butterfly of shuffles (every lane gets the same bits). The order depends only on a unit's
// index within its network, so alone and packed agree; 32 partial sums keep the rounding error
// of a 4,096-unit network near that of a blocked GEMM (a sequential sum was 6x worse than
// torch's on 1,000 units). blockDim must be a multiple of 32.
template <class T>
__global__ void second_layer(const T* __restrict__ Z, const T* __restrict__ V, const int64_t* __restrict__ offsets,
                             int64_t N, int64_t B, int64_t k, int relu, T* __restrict__ out) {
  const unsigned lane = threadIdx.x % 32;
  const int64_t per_block = blockDim.x / 32, total = N * B * k;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / 32; w < total;
       w += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t n = w / (B * k), r = w % (B * k), b = r % B, c = r / B;
    const int64_t h0 = offsets[n], h1 = offsets[n + 1];
    T acc = T(0);
    for (int64_t h = h0 + lane; h < h1; h += 32) {
      T a = Z[h * B + b];
      if (relu) a = a > T(0) ? a : T(0);
      acc += a * V[h * k + c];
    }
    for (int m = 16; m > 0; m /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, m);
    if (lane == 0) out[(n * B + b) * k + c] = acc;
  }
}

// Per sample: the loss (lossb, double) and the prediction's error flag (wrong), and with
// scale > 0 the gradient scale * dloss/dout written over the outputs L (N x B x k).
// loss: 0 softmax cross-entropy with labels, 1 squared with values (B x k) and optional weights.
// A label outside [0, k) gives a NaN loss and gradient (never a read out of bounds).
template <class T>
__global__ void loss_rows(T* __restrict__ L, int64_t N, int64_t B, int64_t k, int loss,
                          const int32_t* __restrict__ labels, const T* __restrict__ values,
                          const T* __restrict__ weights, T scale, double* __restrict__ lossb,
                          int32_t* __restrict__ wrong) {
  PYIREG_FOR(e, N * B) {
    const int64_t b = e % B;
    T* l = L + e * k;
    double lb;
    bool bad;
    if (loss == 0) {
      const int32_t y = labels[b];
      T m = l[0];
      int64_t arg = 0;
      for (int64_t c = 1; c < k; ++c)
        if (l[c] > m) {
          m = l[c];
          arg = c;
        }
      if (y < 0 || y >= k) {
        lb = static_cast<double>(NAN);
        bad = true;
        if (scale > T(0))
          for (int64_t c = 0; c < k; ++c) l[c] = T(lb);
      } else {
        const T ly = l[y];
        T se = T(0);
        for (int64_t c = 0; c < k; ++c) se += dexp(l[c] - m);
        const T lt = dlog(se) + m - ly;
        lb = static_cast<double>(lt);
        bad = arg != y || !dfinite(lb);
        if (scale > T(0)) {
          const T inv = T(1) / se;
          for (int64_t c = 0; c < k; ++c) l[c] = scale * (dexp(l[c] - m) * inv - (c == y ? T(1) : T(0)));
        }
      }
    } else {
      const T* yv = values + b * k;
      const T* w = weights ? weights + b * k : nullptr;
      int64_t arg_o = 0, arg_y = 0;
      for (int64_t c = 1; c < k; ++c) {
        if (l[c] > l[arg_o]) arg_o = c;
        if (yv[c] > yv[arg_y]) arg_y = c;
      }
      double s = 0;
      for (int64_t c = 0; c < k; ++c) {
        const T r = l[c] - yv[c];
        const T wc = w ? w[c] : T(1);
        s += static_cast<double>(wc) * static_cast<double>(r) * static_cast<double>(r);
        if (scale > T(0)) l[c] = scale * (wc * r);
      }
      lb = 0.5 * s;
      bad = arg_o != arg_y || !dfinite(lb);
    }
    lossb[e] = lb;
    wrong[e] = bad ? 1 : 0;
  }
}

// Per network: the sum over its B samples, in order, times `mul`, stored or added.
__global__ void reduce_rows(const double* __restrict__ lossb, const int32_t* __restrict__ wrong, int64_t N, int64_t B,
                            double mul, int accumulate, double* __restrict__ loss, int64_t* __restrict__ errors) {
  PYIREG_FOR(n, N) {
    double s = 0;
    int64_t w = 0;
    for (int64_t b = 0; b < B; ++b) {
      s += lossb[n * B + b];
      w += wrong[n * B + b];
    }
    if (loss) loss[n] = accumulate ? loss[n] + s * mul : s * mul;
    if (errors) errors[n] = accumulate ? errors[n] + w : w;
  }
}

// dV[h, c] = sum_b act(Z[h, b]) G[net(h), b, c].
template <class T>
__global__ void grad_V(const T* __restrict__ Z, const T* __restrict__ G, const int32_t* __restrict__ unit_net,
                       int64_t S, int64_t B, int64_t k, int relu, T* __restrict__ gV) {
  PYIREG_FOR(e, S * k) {
    const int64_t h = e / k, c = e % k;
    const T* g = G + static_cast<int64_t>(unit_net[h]) * B * k + c;
    const T* z = Z + h * B;
    T acc = T(0);
    for (int64_t b = 0; b < B; ++b) {
      T a = z[b];
      if (relu) a = a > T(0) ? a : T(0);
      acc += a * g[b * k];
    }
    gV[e] = acc;
  }
}

// dZ[h, b] = act'(Z[h, b]) sum_c V[h, c] G[net(h), b, c], written over Z (each element reads
// only its own pre-activation).
template <class T>
__global__ void grad_Z(T* __restrict__ Z, const T* __restrict__ G, const T* __restrict__ V,
                       const int32_t* __restrict__ unit_net, int64_t S, int64_t B, int64_t k, int relu) {
  PYIREG_FOR(e, S * B) {
    const int64_t h = e / B, b = e % B;
    const T* g = G + (static_cast<int64_t>(unit_net[h]) * B + b) * k;
    const T* v = V + h * k;
    T s = T(0);
    for (int64_t c = 0; c < k; ++c) s += v[c] * g[c];
    Z[e] = (!relu || Z[e] > T(0)) ? s : T(0);
  }
}

// ---------------------------------------------------------------- update rules
// The formulas are engine/rule_coefs.h's, written once for the CPU's vectors and these scalars.
// Path-SGD's per-row scaling from the weights before the step: qU[h] = 1/||v_h||^2,
// qV[h] = 1/||u_h||^2 (0 where the norm is 0 or the quotient overflows).
template <class T>
__global__ void path_scaling(const T* __restrict__ U, const T* __restrict__ V, int64_t S, int64_t d, int64_t k,
                             T* __restrict__ qU, T* __restrict__ qV) {
  PYIREG_FOR(h, S) {
    qU[h] = inverse_kappa<T>(sq_norm(V + h * k, k));
    qV[h] = inverse_kappa<T>(sq_norm(U + h * d, d));
  }
}

// One rule on the rows x cols weights W with state Sg and gradient G. rule: 0 momentum SGD
// (torch.optim.SGD: with momentum 0 no buffer is touched), 1 Path-SGD (q: per-row scaling),
// 2 DDP-SGD (the state holds the per-weight scaling), 5 Nesterov (torch.optim.SGD(nesterov=True)).
template <class T>
__global__ void update(T* __restrict__ W, T* __restrict__ Sg, const T* __restrict__ G,
                       const int32_t* __restrict__ unit_net, int64_t rows, int64_t cols, int rule,
                       const T* __restrict__ lr, const T* __restrict__ mom, const T* __restrict__ wd,
                       const T* __restrict__ q) {
  PYIREG_FOR(e, rows * cols) {
    const int64_t h = e / cols;
    const int32_t n = unit_net[h];
    T w = W[e];
    const T g = G[e], l = lr[n], dk = wd[n];
    if (rule == 0) {
      const T m = mom[n];
      if (m == T(0)) {
        sgd_update(w, g, l, dk);
      } else {
        T buf = Sg[e];
        momentum_sgd_update(w, buf, g, l, m, dk);
        Sg[e] = buf;
      }
    } else if (rule == 1) {
      T buf = Sg[e];
      path_sgd_update(w, buf, g, l, mom[n], dk, q[h]);
      Sg[e] = buf;
    } else if (rule == 2) {
      ddp_sgd_update(w, Sg[e], g, l, dk);
    } else {
      T buf = Sg[e];
      nesterov_sgd_update(w, buf, g, l, mom[n], dk);
      Sg[e] = buf;
    }
    W[e] = w;
  }
}

// ---------------------------------------------------------------- data statistics, DDP-SGD
// Per unit h, over the nb samples of one block of Z (S x nb): z2[h] (+)= sum_b z^2 and
// a2[h] (+)= sum_b act(z)^2, in double, samples in order.
template <class T>
__global__ void unit_sums(const T* __restrict__ Z, int64_t S, int64_t nb, int relu, int accumulate,
                          double* __restrict__ z2, double* __restrict__ a2) {
  PYIREG_FOR(h, S) {
    double s = 0, a = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const double z = static_cast<double>(Z[h * nb + b]);
      const double r = (!relu || z > 0) ? z : 0.0;
      s += z * z;
      a += r * r;
    }
    z2[h] = accumulate ? z2[h] + s : s;
    a2[h] = accumulate ? a2[h] + a : a;
  }
}

// M[i] = mean_b x_bi^2 (double) and X2 = X * X (the B operand of the mask product).
template <class T>
__global__ void feature_squares(const T* __restrict__ X, int64_t B, int64_t d, double* __restrict__ M,
                                T* __restrict__ X2) {
  PYIREG_FOR(e, B * d) X2[e] = X[e] * X[e];
  PYIREG_FOR(i, d) {
    double s = 0;
    for (int64_t b = 0; b < B; ++b) s += static_cast<double>(X[b * d + i]) * static_cast<double>(X[b * d + i]);
    M[i] = s / static_cast<double>(B);
  }
}

// The DDP-SGD scaling of V's weights (engine/rule_coefs.h's ddp_kappa_V), and Z (S x B) turned
// into the activation mask act'(z) for the product Q = mask X^2.
template <class T>
__global__ void ddp_units(T* __restrict__ Z, const T* __restrict__ U, const T* __restrict__ alpha,
                          const int32_t* __restrict__ unit_net, int64_t S, int64_t B, int64_t d, int64_t k, int relu,
                          T* __restrict__ kV) {
  PYIREG_FOR(h, S) {
    double s2 = 0, a2 = 0;
    for (int64_t b = 0; b < B; ++b) {
      const T z = Z[h * B + b];
      const double zd = static_cast<double>(z), r = (!relu || z > T(0)) ? zd : 0.0;
      s2 += zd * zd;
      a2 += r * r;
      Z[h * B + b] = (!relu || z > T(0)) ? T(1) : T(0);
    }
    const double a = static_cast<double>(alpha[unit_net[h]]), inv_B = 1.0 / static_cast<double>(B);
    const T kv = inverse_kappa<T>(ddp_kappa_V(a, sq_norm(U + h * d, d), s2 * inv_B, a2 * inv_B));
    for (int64_t j = 0; j < k; ++j) kV[h * k + j] = kv;
  }
}

// The DDP-SGD scaling of U's weights (ddp_kappa_U) from Q = mask X^2 (S x d).
template <class T>
__global__ void ddp_weights(const T* __restrict__ Q, const T* __restrict__ V, const T* __restrict__ alpha,
                            const int32_t* __restrict__ unit_net, const double* __restrict__ M, int64_t S, int64_t B,
                            int64_t d, int64_t k, T* __restrict__ kU) {
  PYIREG_FOR(e, S * d) {
    const int64_t h = e / d, i = e % d;
    const double a = static_cast<double>(alpha[unit_net[h]]), inv_B = 1.0 / static_cast<double>(B);
    kU[e] = inverse_kappa<T>(ddp_kappa_U(a, sq_norm(V + h * k, k), M[i], static_cast<double>(Q[e]) * inv_B));
  }
}

// ---------------------------------------------------------------- Theorem 1 and measures
// The CPU's row operations (csrc/cpu/rescale.cpp), one thread per unit: norms summed in double in
// index order, each weight scaled once. mode 0 balance (||u_h|| = ||v_h||; units with u_h = 0 or
// v_h = 0 zeroed), 1 normalize_units (||u_h|| = 1, the scale moved into v_h; u_h = 0 gives
// v_h = 0). zero[h] = 1 for a zero unit (summed by count_rows).
__device__ __forceinline__ double dsqrt(double x) { return sqrt(x); }

template <class T>
__global__ void rescale_rows(T* __restrict__ U, T* __restrict__ V, int64_t S, int64_t d, int64_t k, int mode,
                             int32_t* __restrict__ zero) {
  PYIREG_FOR(h, S) {
    T* u = U + h * d;
    T* v = V + h * k;
    const double nu = row_norm(u, d), nv = mode == 0 ? row_norm(v, k) : 1.0;
    double su, sv;
    if (nu == 0 || nv == 0) {
      su = mode == 0 ? 0.0 : 1.0;  // normalize_units leaves a zero u_h as it is
      sv = 0.0;
    } else if (mode == 0) {
      su = balance_factor(nu, nv);
      sv = 1.0 / su;
    } else {
      su = 1.0 / nu;
      sv = nu;
    }
    for (int64_t i = 0; i < d; ++i) u[i] = static_cast<T>(u[i] * su);
    for (int64_t j = 0; j < k; ++j) v[j] = static_cast<T>(v[j] * sv);
    zero[h] = (nu == 0 || nv == 0) ? 1 : 0;
  }
}

// count[0] = sum of flags[0 .. n), in one thread (milliseconds for a million units: a serial
// loop on one GPU thread; the count is the rescaling's return value, not on a training path).
__global__ void count_rows(const int32_t* __restrict__ flags, int64_t n, int64_t* __restrict__ count) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; ++i) c += flags[i];
    count[0] = c;
  }
}

// Per network, in unit order (the CPU's measures): out[0..5][n] = l2_penalty, group_l1,
// path_l1, path_l2, norm_U, norm_V.
template <class T>
__global__ void measures(const T* __restrict__ U, const T* __restrict__ V, const int64_t* __restrict__ offsets,
                         int64_t N, int64_t d, int64_t k, double* __restrict__ out) {
  PYIREG_FOR(n, N) {
    double a = 0, b = 0, c = 0, e = 0, fu = 0, fv = 0;
    for (int64_t h = offsets[n]; h < offsets[n + 1]; ++h) {
      const double u2 = sq_norm(U + h * d, d), v2 = sq_norm(V + h * k, k);
      const double uv = norm_product(U + h * d, d, V + h * k, k, u2, v2);  // the CPU's formulas
      double l1u = 0, l1v = 0;
      for (int64_t i = 0; i < d; ++i) l1u += fabs(static_cast<double>(U[h * d + i]));
      for (int64_t j = 0; j < k; ++j) l1v += fabs(static_cast<double>(V[h * k + j]));
      fu += u2;
      fv += v2;
      a += 0.5 * (u2 + v2);
      b += uv;
      c += l1u * l1v;
      e += u2 * v2;
    }
    const int64_t h0 = offsets[n], h1 = offsets[n + 1];
    out[0 * N + n] = a;
    out[1 * N + n] = b;
    out[2 * N + n] = c;
    out[3 * N + n] = is_normal(e) ? dsqrt(e) : path_l2_scaled(U, V, h0, h1, d, k);
    out[4 * N + n] = is_normal(fu) ? dsqrt(fu) : row_norm(U + h0 * d, (h1 - h0) * d);
    out[5 * N + n] = is_normal(fv) ? dsqrt(fv) : row_norm(V + h0 * k, (h1 - h0) * k);
  }
}

}  // namespace cuda_kernels
}  // namespace pyireg
