// Kernels of the packed two-layer network, written once with GCC/Clang vector extensions and
// compiled once per SIMD target: packed_mlp_generic.cpp (baseline ISA) and packed_mlp_avx2.cpp
// (-mavx2 -mfma). The includer defines PYIREG_ISA, the namespace the kernels land in.
//
// Layouts (Bp = batch rounded up to the vector width W, dp = d rounded up to W):
//   XT  d x Bp   the batch transposed, zero padded: B operand of the first-layer GEMM
//   Xp  B x dp   the batch, zero padded:            B operand of the dU GEMM
//   AT  S x Bp   act(U X^T), unit-major:            kept between forward and backward
//   logits N x k x Bp (per network, class-major, sample-contiguous), overwritten by dLoss/dlogits
// Per chunk of hidden units: first-layer GEMM with fused activation, segmented second layer
// into per-run logits; then, after the per-network softmax-CE, the fused backward of the chunk
// (dV, dA, activation mask, dU GEMM) followed directly by the momentum-SGD update of its rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "packed_mlp.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace pyireg {
namespace PYIREG_ISA {
namespace {

template <class T> struct VecOf;
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
  static constexpr int W = 8;
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
  static constexpr int W = 4;
};
template <class T> using vec = typename VecOf<T>::type;

template <class T> inline vec<T> ld(const T* p) {
  vec<T> r;
  std::memcpy(&r, p, sizeof r);
  return r;
}
template <class T> inline void st(T* p, vec<T> v) { std::memcpy(p, &v, sizeof v); }
// Brace initialization compiles to a single vbroadcast (from memory when s is loaded); the
// shorter `vec{} + s` costs an extra scalar add, since 0 + s is not s for s = -0.
template <class T> inline vec<T> splat(T s);
template <> inline vec<float> splat<float>(float s) { return vec<float>{s, s, s, s, s, s, s, s}; }
template <> inline vec<double> splat<double>(double s) { return vec<double>{s, s, s, s}; }
template <class T> inline T hsum(vec<T> v) {
  T s = 0;
  for (int i = 0; i < VecOf<T>::W; ++i) s += v[i];
  return s;
}
// relu that keeps NaN (as torch.relu does), so a diverged network stays visibly diverged
template <class T> inline vec<T> relu(vec<T> v) { return v < 0 ? vec<T>{} : v; }

inline int thread_id() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Grow-only workspace buffers: a step allocates only when it needs more than any step before.
template <class T, class V> inline void grow(Workspace<T>& ws, V& v, size_t n) {
  if (v.size() < n) {
    v.resize(n);
    ++ws.allocations;
  }
}

// ---------------------------------------------------------------- momentum update
// torch.optim.SGD(momentum=m, dampening=0, nesterov=False, weight_decay=wd) on every row:
//   g = grad + wd * w;  buf = m * buf + g;  w -= lr * buf   (buf starts at zero, so the first
// step gives buf = g exactly, as torch's clone of the first gradient does). Explicitly
// vectorized: the rows never alias, which the compiler cannot know.
template <class T>
inline void sgd_rows(int64_t n, T* __restrict__ w, T* __restrict__ buf, const T* __restrict__ g, T lr, T m, T wd) {
  constexpr int W = VecOf<T>::W;
  const vec<T> vlr = splat(lr), vm = splat(m), vwd = splat(wd);
  int64_t i = 0;
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

// ---------------------------------------------------------------- register-blocked GEMM
// Momentum-SGD epilogue of the dU product: the tile is the gradient of rows of U; apply the
// update (sgd_rows) to them instead of storing the tile (columns from `valid` on are padding).
template <class T> struct SgdTile {
  T* U = nullptr;      // the tile's first row of U (row stride ld), at the tile's first column
  T* buf = nullptr;    // likewise for the momentum buffer
  int64_t ld = 0;
  int64_t valid = 0;   // valid columns from the tile's first column
  const T* lr = nullptr;   // per row of the tile
  const T* mom = nullptr;
  const T* wd = nullptr;
};

// C[i, j] = sum_kk A[i*lda + kk] * Bm[kk*ldb + j] for i < MR, j < NV*W; optional fused relu.
template <class T, int MR, int NV, bool RELU>
inline void micro(int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb, T* C, int64_t ldc,
                  const SgdTile<T>* sgd = nullptr) {
  constexpr int W = VecOf<T>::W;
  vec<T> acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = vec<T>{};
  for (int64_t kk = 0; kk < K; ++kk) {
    vec<T> b[NV];
    for (int v = 0; v < NV; ++v) b[v] = ld(Bm + kk * ldb + v * W);
    for (int i = 0; i < MR; ++i) {
      const vec<T> a = splat(A[i * lda + kk]);
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
  if (sgd) {
    for (int i = 0; i < MR; ++i) {
      const T lr = sgd->lr[i], m = sgd->mom[i], wd = sgd->wd[i];
      T* w = sgd->U + i * sgd->ld;
      T* b = sgd->buf + i * sgd->ld;
      for (int v = 0; v < NV && v * W < sgd->valid; ++v) {
        T g[W];
        st(g, acc[i][v]);
        sgd_rows(std::min<int64_t>(W, sgd->valid - v * W), w + v * W, b + v * W, g, lr, m, wd);
      }
    }
    return;
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) st(C + i * ldc + v * W, RELU ? relu<T>(acc[i][v]) : acc[i][v]);
}

template <class T, int MR, bool RELU>
inline void gemm_cols(int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb,
                      T* C, int64_t ldc, const SgdTile<T>* sgd_rows = nullptr) {
  constexpr int W = VecOf<T>::W;
  SgdTile<T> t;
  const SgdTile<T>* tp = nullptr;
  if (sgd_rows) {
    t = *sgd_rows;
    tp = &t;
  }
  int64_t j = 0;
  for (; j + 2 * W <= ncols; j += 2 * W) {
    if (tp) t.U = sgd_rows->U + j, t.buf = sgd_rows->buf + j, t.valid = sgd_rows->valid - j;
    micro<T, MR, 2, RELU>(K, A, lda, Bm + j, ldb, C + j, ldc, tp);
  }
  if (j < ncols) {
    if (tp) t.U = sgd_rows->U + j, t.buf = sgd_rows->buf + j, t.valid = sgd_rows->valid - j;
    micro<T, MR, 1, RELU>(K, A, lda, Bm + j, ldb, C + j, ldc, tp);
  }
}

// C (M x ncols) = A (M x K) * Bm (K x ncols); ncols a multiple of W. With `sgd`, the product is
// the gradient of M rows of U and is applied to them (see SgdTile) instead of stored in C.
template <class T, bool RELU>
void gemm(int64_t M, int64_t ncols, int64_t K, const T* A, int64_t lda, const T* Bm, int64_t ldb,
          T* C, int64_t ldc, const SgdTile<T>* sgd = nullptr) {
  constexpr int MR = 6;
  SgdTile<T> t;
  auto rows = [&](int64_t i) -> const SgdTile<T>* {
    if (!sgd) return nullptr;
    t = *sgd;
    t.U = sgd->U + i * sgd->ld;
    t.buf = sgd->buf + i * sgd->ld;
    t.lr = sgd->lr + i;
    t.mom = sgd->mom + i;
    t.wd = sgd->wd + i;
    return &t;
  };
  int64_t i = 0;
  for (; i + MR <= M; i += MR)
    gemm_cols<T, MR, RELU>(ncols, K, A + i * lda, lda, Bm, ldb, C + i * ldc, ldc, rows(i));
  const T* Ai = A + i * lda;
  T* Ci = C + i * ldc;
  const SgdTile<T>* r = rows(i);
  switch (M - i) {
    case 1: gemm_cols<T, 1, RELU>(ncols, K, Ai, lda, Bm, ldb, Ci, ldc, r); break;
    case 2: gemm_cols<T, 2, RELU>(ncols, K, Ai, lda, Bm, ldb, Ci, ldc, r); break;
    case 3: gemm_cols<T, 3, RELU>(ncols, K, Ai, lda, Bm, ldb, Ci, ldc, r); break;
    case 4: gemm_cols<T, 4, RELU>(ncols, K, Ai, lda, Bm, ldb, Ci, ldc, r); break;
    case 5: gemm_cols<T, 5, RELU>(ncols, K, Ai, lda, Bm, ldb, Ci, ldc, r); break;
    default: break;
  }
}

// ---------------------------------------------------------------- segmented second layer
// L[c, j] (+)= sum_{h < nrows} V[h, c0 + c] * AT[h, j] for c < CC, all j < Bp.
template <class T, int CC>
void second_layer_group(const T* AT, int64_t nrows, const T* V, int64_t k, int64_t c0, int64_t Bp,
                        T* L) {
  constexpr int W = VecOf<T>::W;
  for (int64_t j = 0; j < Bp; j += W) {
    vec<T> acc[CC];
    for (int c = 0; c < CC; ++c) acc[c] = vec<T>{};
    for (int64_t h = 0; h < nrows; ++h) {
      const vec<T> a = ld(AT + h * Bp + j);
      const T* v = V + h * k + c0;
      for (int c = 0; c < CC; ++c) acc[c] += splat(v[c]) * a;
    }
    for (int c = 0; c < CC; ++c) st(L + (c0 + c) * Bp + j, acc[c]);
  }
}

constexpr int64_t kClassGroup = 12;  // classes handled per pass; keeps accumulators in registers

template <class T>
void second_layer(const T* AT, int64_t nrows, const T* V, int64_t k, int64_t Bp, T* L) {
  for (int64_t c0 = 0; c0 < k; c0 += kClassGroup) {
    switch (std::min(kClassGroup, k - c0)) {
#define PYIREG_CASE(n) \
  case n: second_layer_group<T, n>(AT, nrows, V, k, c0, Bp, L); break;
      PYIREG_CASE(1) PYIREG_CASE(2) PYIREG_CASE(3) PYIREG_CASE(4) PYIREG_CASE(5) PYIREG_CASE(6)
      PYIREG_CASE(7) PYIREG_CASE(8) PYIREG_CASE(9) PYIREG_CASE(10) PYIREG_CASE(11) PYIREG_CASE(12)
#undef PYIREG_CASE
      default: break;
    }
  }
}

// One unit's backward for classes [c0, c0 + CC): dv[c] = <at, G[c]>, dz += sum_c v[c] G[c];
// on the last class group the activation mask is applied.
template <class T, int CC>
void unit_backward_group(const T* at, const T* G, const T* v, int64_t c0, int64_t Bp, T* dz, T* dv,
                         bool first, bool last, bool use_relu) {
  constexpr int W = VecOf<T>::W;
  vec<T> dvacc[CC];
  for (int c = 0; c < CC; ++c) dvacc[c] = vec<T>{};
  for (int64_t j = 0; j < Bp; j += W) {
    const vec<T> a = ld(at + j);
    vec<T> da = first ? vec<T>{} : ld(dz + j);
    for (int c = 0; c < CC; ++c) {
      const vec<T> g = ld(G + (c0 + c) * Bp + j);
      dvacc[c] += a * g;
      da += splat(v[c0 + c]) * g;
    }
    if (last && use_relu) da = a > 0 ? da : vec<T>{};
    st(dz + j, da);
  }
  for (int c = 0; c < CC; ++c) dv[c0 + c] = hsum<T>(dvacc[c]);
}

template <class T>
void unit_backward(const T* at, const T* G, const T* v, int64_t k, int64_t Bp, T* dz, T* dv,
                   bool use_relu) {
  for (int64_t c0 = 0; c0 < k; c0 += kClassGroup) {
    const bool first = c0 == 0, last = c0 + kClassGroup >= k;
    switch (std::min(kClassGroup, k - c0)) {
#define PYIREG_CASE(n) \
  case n: unit_backward_group<T, n>(at, G, v, c0, Bp, dz, dv, first, last, use_relu); break;
      PYIREG_CASE(1) PYIREG_CASE(2) PYIREG_CASE(3) PYIREG_CASE(4) PYIREG_CASE(5) PYIREG_CASE(6)
      PYIREG_CASE(7) PYIREG_CASE(8) PYIREG_CASE(9) PYIREG_CASE(10) PYIREG_CASE(11) PYIREG_CASE(12)
#undef PYIREG_CASE
      default: break;
    }
  }
}

// ---------------------------------------------------------------- batch packing
template <class T>
void pack_batch(Workspace<T>& ws, const T* X, int64_t B, int64_t d, int64_t Bp, int64_t dp,
                bool need_Xp) {
  grow(ws, ws.XT, static_cast<size_t>(d * Bp));
  T* XT = ws.XT.data();
  for (int64_t f = 0; f < d; ++f) {
    T* row = XT + f * Bp;
    for (int64_t b = 0; b < B; ++b) row[b] = X[b * d + f];
    for (int64_t b = B; b < Bp; ++b) row[b] = T(0);
  }
  if (!need_Xp) return;
  grow(ws, ws.Xp, static_cast<size_t>(B * dp));
  T* Xp = ws.Xp.data();
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(Xp + b * dp, X + b * d, sizeof(T) * d);
    for (int64_t f = d; f < dp; ++f) Xp[b * dp + f] = T(0);
  }
}

// Forward of chunks [c0, c1): act(U X^T) into AT (row h at AT + (h - at_unit0) * Bp), or into
// per-thread scratch when AT is null, and each run's partial logits into its slot or straight
// into its network's logits.
template <class T>
void forward_chunks(const Plan& p, Activation act, const T* U, const T* V, const T* XT, int64_t Bp,
                    T* AT, int64_t at_unit0, T* slots, T* logits, T* scratch, int64_t scratch_stride,
                    int64_t c0, int64_t c1) {
  const int64_t d = p.d, k = p.k;
  const bool use_relu = act == Activation::relu;
  // dynamic: chunks differ in size, and which thread runs a chunk never changes its result
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
    T* at = AT ? AT + (h0 - at_unit0) * Bp : scratch + thread_id() * scratch_stride;
    if (use_relu)
      gemm<T, true>(h1 - h0, Bp, d, U + h0 * d, d, XT, Bp, at, Bp);
    else
      gemm<T, false>(h1 - h0, Bp, d, U + h0 * d, d, XT, Bp, at, Bp);
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      T* L = run.slot >= 0 ? slots + run.slot * k * Bp : logits + run.net * k * Bp;
      second_layer(at + (run.begin - h0) * Bp, run.end - run.begin, V + run.begin * k, k, Bp, L);
    }
  }
}

// Sum the partial logits of network n (in unit order: independent of the thread count).
template <class T>
void reduce_logits(const Plan& p, int64_t n, int64_t Bp, const T* slots, T* L) {
  const int64_t r0 = p.net_run_ptr[n], r1 = p.net_run_ptr[n + 1];
  const int64_t len = p.k * Bp;
  if (p.runs[p.net_runs[r0]].slot < 0) return;  // a single run wrote L directly
  std::memcpy(L, slots + p.runs[p.net_runs[r0]].slot * len, sizeof(T) * len);
  for (int64_t i = r0 + 1; i < r1; ++i) {
    const T* s = slots + p.runs[p.net_runs[i]].slot * len;
    for (int64_t e = 0; e < len; ++e) L[e] += s[e];
  }
}

// Softmax cross-entropy of one network's logits L (k x Bp) for B samples. Adds the summed loss
// to *loss_sum and wrong predictions to *errors (a sample with a non-finite loss counts as
// wrong). With grad_scale > 0, L is overwritten by grad_scale * (softmax - onehot).
template <class T>
void softmax_ce(int64_t k, int64_t B, int64_t Bp, T* L, const int32_t* y, T grad_scale,
                double* loss_sum, int64_t* errors) {
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

// Forward + loss + dLoss/dlogits of group g; its activations stay in AT for the backward.
template <class T>
void forward_loss_group(Workspace<T>& ws, const Call<T>& cl, int64_t Bp, int64_t g) {
  const Plan& p = *cl.plan;
  const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
  forward_chunks(p, cl.act, cl.U, cl.V, ws.XT.data(), Bp, ws.AT.data(), p.chunk_begin[c0], ws.slots.data(),
                 ws.logits.data(), static_cast<T*>(nullptr), 0, c0, c1);
  const T scale = T(1) / static_cast<T>(cl.B);
  T* logits = ws.logits.data();
  const T* slots = ws.slots.data();
#pragma omp parallel for schedule(static)
  for (int64_t n = p.group_net_ptr[g]; n < p.group_net_ptr[g + 1]; ++n) {
    T* L = logits + n * p.k * Bp;
    reduce_logits(p, n, Bp, slots, L);
    double s = 0;
    softmax_ce(p.k, cl.B, Bp, L, cl.y, scale, &s, static_cast<int64_t*>(nullptr));
    if (cl.loss) cl.loss[n] = s / static_cast<double>(cl.B);
  }
}

// Per-thread scratch of the backward: dZ^T (cu x Bp), dU (cu x dp), dV (cu x k) and the
// per-row lr, momentum, weight decay of the fused update (3 x cu).
inline int64_t backward_scratch(const Plan& p, int64_t Bp, int64_t dp) {
  const int64_t cu = p.chunk_units;
  return cu * Bp + cu * dp + cu * p.k + 3 * cu;
}

// Backward of the chunks of group g, then `sink(c, dU, dV)` with chunk c's gradients
// (dU: rows x dp, dV: rows x k) in per-thread scratch. When training (cl.bufU set), the dU
// product applies the momentum update to U's rows in its epilogue and dU is not stored.
template <class T, class Sink>
void backward_group(Workspace<T>& ws, const Call<T>& cl, int64_t Bp, int64_t dp, int64_t g, Sink sink) {
  const Plan& p = *cl.plan;
  const int64_t cu = p.chunk_units, k = p.k;
  const int64_t stride = backward_scratch(p, Bp, dp);
  const bool use_relu = cl.act == Activation::relu;
  const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
  const T* AT = ws.AT.data() - p.chunk_begin[c0] * Bp;  // indexed by global unit below
  const T* G = ws.logits.data();
  const T* Xp = ws.Xp.data();
  T* scratch = ws.thread_scratch.data();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = c0; c < c1; ++c) {
    T* dZT = scratch + thread_id() * stride;
    T* dU = dZT + cu * Bp;
    T* dV = dU + cu * dp;
    const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      const T* Gn = G + run.net * k * Bp;
      for (int64_t h = run.begin; h < run.end; ++h)
        unit_backward(AT + h * Bp, Gn, cl.V + h * k, k, Bp, dZT + (h - h0) * Bp, dV + (h - h0) * k,
                      use_relu);
    }
    if (cl.bufU) {
      // training: the dU product updates U in its epilogue; hyper-parameters per row
      T* hyp = dV + cu * k;
      for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
        const Run& run = p.runs[r];
        for (int64_t h = run.begin; h < run.end; ++h) {
          hyp[h - h0] = cl.lr[run.net];
          hyp[cu + h - h0] = cl.momentum[run.net];
          hyp[2 * cu + h - h0] = cl.weight_decay[run.net];
        }
      }
      SgdTile<T> t;
      t.U = cl.U + h0 * p.d;
      t.buf = cl.bufU + h0 * p.d;
      t.ld = p.d;
      t.valid = p.d;
      t.lr = hyp;
      t.mom = hyp + cu;
      t.wd = hyp + 2 * cu;
      gemm<T, false>(h1 - h0, dp, cl.B, dZT, Bp, Xp, dp, dU, dp, &t);
    } else {
      gemm<T, false>(h1 - h0, dp, cl.B, dZT, Bp, Xp, dp, dU, dp);
    }
    sink(c, dU, dV);
  }
}

// One training pass over the batch, group by group: forward, loss, backward, then `sink` for
// every chunk (which writes gradients or applies the update).
template <class T, class Sink>
void train_pass(Workspace<T>& ws, const Call<T>& cl, int64_t Bp, int64_t dp, Sink sink) {
  const Plan& p = *cl.plan;
  pack_batch(ws, cl.X, cl.B, p.d, Bp, dp, true);
  grow(ws, ws.AT, static_cast<size_t>(p.max_group_units * Bp));
  grow(ws, ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * Bp));
  grow(ws, ws.logits, static_cast<size_t>(p.N * p.k * Bp));
  grow(ws, ws.thread_scratch, static_cast<size_t>(num_threads() * backward_scratch(p, Bp, dp)));
  for (int64_t g = 0; g + 1 < static_cast<int64_t>(p.group_chunk_ptr.size()); ++g) {
    forward_loss_group(ws, cl, Bp, g);
    backward_group(ws, cl, Bp, dp, g, sink);
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points
template <class T>
void forward(Workspace<T>& ws, const Call<T>& cl) {
  const Plan& p = *cl.plan;
  if (cl.B == 0) return;
  constexpr int W = VecOf<T>::W;
  const int64_t Bp = round_up(cl.B, W);
  pack_batch(ws, cl.X, cl.B, p.d, Bp, 0, false);
  grow(ws, ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * Bp));
  grow(ws, ws.logits, static_cast<size_t>(p.N * p.k * Bp));
  const int64_t stride = p.chunk_units * Bp;
  grow(ws, ws.thread_scratch, static_cast<size_t>(num_threads() * stride));
  forward_chunks(p, cl.act, cl.U, cl.V, ws.XT.data(), Bp, static_cast<T*>(nullptr), 0, ws.slots.data(),
                 ws.logits.data(), ws.thread_scratch.data(), stride, 0, p.nchunks());
  T* logits = ws.logits.data();
  const T* slots = ws.slots.data();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < p.N; ++n) {
    T* L = logits + n * p.k * Bp;
    reduce_logits(p, n, Bp, slots, L);
    T* out = cl.logits_out + n * cl.B * p.k;
    for (int64_t b = 0; b < cl.B; ++b)
      for (int64_t c = 0; c < p.k; ++c) out[b * p.k + c] = L[c * Bp + b];
  }
}

template <class T>
void loss_grad(Workspace<T>& ws, const Call<T>& cl) {
  const Plan& p = *cl.plan;
  if (cl.B == 0) return;
  constexpr int W = VecOf<T>::W;
  const int64_t Bp = round_up(cl.B, W), dp = round_up(p.d, W), d = p.d, k = p.k;
  T* gU = cl.gU;
  T* gV = cl.gV;
  const Plan* pp = &p;
  train_pass(ws, cl, Bp, dp, [=](int64_t c, const T* dU, const T* dV) {
    const int64_t h0 = pp->chunk_begin[c];
    for (int64_t h = h0; h < pp->chunk_begin[c + 1]; ++h) {
      std::memcpy(gU + h * d, dU + (h - h0) * dp, sizeof(T) * d);
      std::memcpy(gV + h * k, dV + (h - h0) * k, sizeof(T) * k);
    }
  });
}

template <class T>
void sgd_step(Workspace<T>& ws, const Call<T>& cl) {
  const Plan& p = *cl.plan;
  if (cl.B == 0) return;
  constexpr int W = VecOf<T>::W;
  const int64_t Bp = round_up(cl.B, W), dp = round_up(p.d, W), k = p.k;
  const Call<T> c = cl;
  const Plan* pp = &p;
  // U's rows are updated inside the dU product (backward_group); this sink updates V's rows
  train_pass(ws, cl, Bp, dp, [=](int64_t chunk, const T*, const T* dV) {
    const int64_t h0 = pp->chunk_begin[chunk];
    for (int64_t r = pp->chunk_run_ptr[chunk]; r < pp->chunk_run_ptr[chunk + 1]; ++r) {
      const Run& run = pp->runs[r];
      const T lr = c.lr[run.net], m = c.momentum[run.net], wd = c.weight_decay[run.net];
      for (int64_t h = run.begin; h < run.end; ++h)
        sgd_rows(k, c.V + h * k, c.bufV + h * k, dV + (h - h0) * k, lr, m, wd);
    }
  });
}

template <class T>
void evaluate(Workspace<T>& ws, const Call<T>& cl) {
  const Plan& p = *cl.plan;
  for (int64_t n = 0; n < p.N; ++n) {
    cl.loss[n] = 0;
    cl.errors[n] = 0;
  }
  if (cl.B == 0) return;
  constexpr int W = VecOf<T>::W;
  const int64_t blk = std::max<int64_t>(1, cl.eval_block);
  const int64_t Bpmax = round_up(std::min(blk, cl.B), W);
  grow(ws, ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * Bpmax));
  grow(ws, ws.logits, static_cast<size_t>(p.N * p.k * Bpmax));
  const int64_t stride = p.chunk_units * Bpmax;
  grow(ws, ws.thread_scratch, static_cast<size_t>(num_threads() * stride));
  for (int64_t b0 = 0; b0 < cl.B; b0 += blk) {
    const int64_t nb = std::min(blk, cl.B - b0);
    const int64_t Bp = round_up(nb, W);
    pack_batch(ws, cl.X + b0 * p.d, nb, p.d, Bp, 0, false);
    forward_chunks(p, cl.act, cl.U, cl.V, ws.XT.data(), Bp, static_cast<T*>(nullptr), 0,
                   ws.slots.data(), ws.logits.data(), ws.thread_scratch.data(), stride, 0, p.nchunks());
    T* logits = ws.logits.data();
    const T* slots = ws.slots.data();
    const int32_t* y = cl.y + b0;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < p.N; ++n) {
      T* L = logits + n * p.k * Bp;
      reduce_logits(p, n, Bp, slots, L);
      softmax_ce(p.k, nb, Bp, L, y, T(0), cl.loss + n, cl.errors + n);
    }
  }
}

template void forward<float>(Workspace<float>&, const Call<float>&);
template void forward<double>(Workspace<double>&, const Call<double>&);
template void loss_grad<float>(Workspace<float>&, const Call<float>&);
template void loss_grad<double>(Workspace<double>&, const Call<double>&);
template void sgd_step<float>(Workspace<float>&, const Call<float>&);
template void sgd_step<double>(Workspace<double>&, const Call<double>&);
template void evaluate<float>(Workspace<float>&, const Call<float>&);
template void evaluate<double>(Workspace<double>&, const Call<double>&);

}  // namespace PYIREG_ISA
}  // namespace pyireg
