// Per-unit statistics of the weights for the complexity measures of pyireg.measures (one pass
// over U and V, and over the initial weights when given). Raw pointers and sizes only;
// `threads` is the OpenMP team size.
#pragma once

#include <cstdint>

namespace pyireg {

// Columns of unit_stats' output, one row per hidden unit.
enum UnitStat : int {
  kU2 = 0,    // ||u_h||_2^2
  kV2,        // ||v_h||_2^2
  kU1,        // ||u_h||_1
  kV1,        // ||v_h||_1
  kUp,        // ||u_h||_p^p  (NaN when no p is given)
  kVp,        // ||v_h||_p^p
  kUmax,      // ||u_h||_inf
  kVmax,      // ||v_h||_inf
  kDU2,       // ||u_h - u0_h||_2^2  (NaN without initial weights)
  kDV2,       // ||v_h - v0_h||_2^2
  kUnitStats  // number of columns
};

// out (S x kUnitStats, row-major) in double, each sum in index order. U0, V0 may be null (no
// distances); p <= 0 means no lp column (p = 1 and 2 are always in kU1/kU2).
template <class T>
void unit_stats(const T* U, const T* V, const T* U0, const T* V0, int64_t S, int64_t d, int64_t k, double p,
                double* out, int threads);

}  // namespace pyireg
