// Per-unit statistics of the complexity measures (measures.h). Sums in double, in index order,
// one unit per iteration: the result does not depend on the thread count.
#include "measures.h"

#include <cmath>
#include <limits>

namespace pyireg {
namespace {

struct RowStats {
  double l2 = 0, l1 = 0, lp = 0, linf = 0;
};

template <class T>
inline RowStats row_stats(const T* r, int64_t n, double p) {
  RowStats s;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(static_cast<double>(r[i]));
    s.l2 += a * a;
    s.l1 += a;
    if (a > s.linf || std::isnan(a)) s.linf = a;
  }
  if (p > 0) {
    for (int64_t i = 0; i < n; ++i) s.lp += std::pow(std::fabs(static_cast<double>(r[i])), p);
  } else {
    s.lp = std::numeric_limits<double>::quiet_NaN();
  }
  return s;
}

template <class T>
inline double sq_dist(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += e * e;
  }
  return s;
}

}  // namespace

template <class T>
void unit_stats(const T* U, const T* V, const T* U0, const T* V0, int64_t S, int64_t d, int64_t k, double p,
                double* out, int threads) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t h = 0; h < S; ++h) {
    const RowStats su = row_stats(U + h * d, d, p), sv = row_stats(V + h * k, k, p);
    double* o = out + h * kUnitStats;
    o[kU2] = su.l2;
    o[kV2] = sv.l2;
    o[kU1] = su.l1;
    o[kV1] = sv.l1;
    o[kUp] = su.lp;
    o[kVp] = sv.lp;
    o[kUmax] = su.linf;
    o[kVmax] = sv.linf;
    o[kDU2] = U0 ? sq_dist(U + h * d, U0 + h * d, d) : nan;
    o[kDV2] = V0 ? sq_dist(V + h * k, V0 + h * k, k) : nan;
  }
}

template void unit_stats<float>(const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                double, double*, int);
template void unit_stats<double>(const double*, const double*, const double*, const double*, int64_t, int64_t, int64_t,
                                 double, double*, int);

}  // namespace pyireg
