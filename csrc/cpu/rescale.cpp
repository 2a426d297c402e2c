// Per-unit rescalings and norm measures of Theorem 1 (see rescale.h). Row norms are taken in
// double so that the rescaled rows and the measures carry float32 rounding only once.
#include "rescale.h"

#include <cmath>

#include "engine/rule_coefs.h"  // sq_norm, row_norm, ...: the rules' and the CUDA kernels' row norms

namespace pyireg {
namespace {

template <class T>
inline double l1(const T* r, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(r[i]));
  return s;
}
template <class T>
inline void scale(T* r, int64_t n, double s) {
  for (int64_t i = 0; i < n; ++i) r[i] = static_cast<T>(r[i] * s);
}

}  // namespace

template <class T>
int64_t balance(T* U, T* V, int64_t S, int64_t d, int64_t k, int threads) {
  int64_t zero = 0;
#pragma omp parallel for schedule(static) reduction(+ : zero) num_threads(threads)
  for (int64_t h = 0; h < S; ++h) {
    T* u = U + h * d;
    T* v = V + h * k;
    const double nu = row_norm(u, d), nv = row_norm(v, k);
    if (nu == 0 || nv == 0) {
      scale(u, d, 0.0);
      scale(v, k, 0.0);
      ++zero;
      continue;
    }
    const double s = balance_factor(nu, nv);
    scale(u, d, s);
    scale(v, k, 1.0 / s);
  }
  return zero;
}

template <class T>
int64_t normalize_units(T* U, T* V, int64_t S, int64_t d, int64_t k, int threads) {
  int64_t zero = 0;
#pragma omp parallel for schedule(static) reduction(+ : zero) num_threads(threads)
  for (int64_t h = 0; h < S; ++h) {
    T* u = U + h * d;
    T* v = V + h * k;
    const double nu = row_norm(u, d);
    if (nu == 0) {
      scale(v, k, 0.0);
      ++zero;
      continue;
    }
    scale(u, d, 1.0 / nu);
    scale(v, k, nu);
  }
  return zero;
}

template <class T>
void measures(const T* U, const T* V, const int64_t* offsets, int64_t N, int64_t d, int64_t k, double* l2_penalty,
              double* group_l1, double* path_l1, double* path_l2, double* norm_U, double* norm_V, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) {
    double a = 0, b = 0, c = 0, e = 0, fu = 0, fv = 0;
    for (int64_t h = offsets[n]; h < offsets[n + 1]; ++h) {
      const double u2 = sq_norm(U + h * d, d), v2 = sq_norm(V + h * k, k);
      const double uv = norm_product(U + h * d, d, V + h * k, k, u2, v2);  // sqrt(u2 v2), robust
      fu += u2;
      fv += v2;
      a += 0.5 * (u2 + v2);
      b += uv;
      c += l1(U + h * d, d) * l1(V + h * k, k);
      e += u2 * v2;  // path_l2 falls back to a scaled sum below where this is not normal
    }
    const int64_t h0 = offsets[n], h1 = offsets[n + 1];
    l2_penalty[n] = a;
    group_l1[n] = b;
    path_l1[n] = c;
    // the plain sums of squares where they are normal doubles (every float32 model), else scaled
    // sums (float64 weights beyond about 1e154 or below 1e-154)
    path_l2[n] = is_normal(e) ? std::sqrt(e) : path_l2_scaled(U, V, h0, h1, d, k);
    norm_U[n] = is_normal(fu) ? std::sqrt(fu) : row_norm(U + h0 * d, (h1 - h0) * d);
    norm_V[n] = is_normal(fv) ? std::sqrt(fv) : row_norm(V + h0 * k, (h1 - h0) * k);
  }
}

template <class T>
void unit_balance(const T* U, const T* V, int64_t S, int64_t d, int64_t k, double* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t h = 0; h < S; ++h) out[h] = sq_norm(U + h * d, d) - sq_norm(V + h * k, k);
}

#define PYIREG_INSTANTIATE(T)                                                                                         \
  template int64_t balance<T>(T*, T*, int64_t, int64_t, int64_t, int);                                                \
  template int64_t normalize_units<T>(T*, T*, int64_t, int64_t, int64_t, int);                                        \
  template void measures<T>(const T*, const T*, const int64_t*, int64_t, int64_t, int64_t, double*, double*, double*, \
                            double*, double*, double*, int);                                                          \
  template void unit_balance<T>(const T*, const T*, int64_t, int64_t, int64_t, double*, int);
PYIREG_INSTANTIATE(float)
PYIREG_INSTANTIATE(double)

}  // namespace pyireg
