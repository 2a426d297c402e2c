// Per-unit operations of Theorem 1 on a packed model (unit h = row h of U and of V): the
// function-preserving rescalings u_h -> s u_h, v_h -> v_h / s (s > 0), and the per-network
// norm measures. Raw pointers and sizes only; `threads` is the OpenMP team size.
#pragma once

#include <cstdint>

namespace pyireg {

// Rescale every unit so that ||u_h|| = ||v_h|| = sqrt(||u_h|| ||v_h||), the minimizer of
// 1/2 (||u_h||^2 + ||v_h||^2) among rescalings. A unit with u_h = 0 or v_h = 0 computes the zero
// function; both rows are set to zero (the least-norm way to write it). Returns the number of
// such units.
template <class T>
int64_t balance(T* U, T* V, int64_t S, int64_t d, int64_t k, int threads);

// Rescale every unit so that ||u_h|| = 1, moving the scale into v_h. A unit with u_h = 0 cannot
// be normalized: it computes zero, so v_h is set to zero and u_h stays zero. Returns the number
// of such units.
template <class T>
int64_t normalize_units(T* U, T* V, int64_t S, int64_t d, int64_t k, int threads);

// Per network n (units offsets[n]..offsets[n+1]), accumulated in double in unit order:
//   l2_penalty = 1/2 sum_h (||u_h||^2 + ||v_h||^2)     group_l1 = sum_h ||u_h|| ||v_h||
//   path_l1    = sum_h ||u_h||_1 ||v_h||_1             path_l2  = sqrt(sum_h ||u_h||^2 ||v_h||^2)
//   norm_U     = ||U_n||_F                              norm_V   = ||V_n||_F
// (path_l1 / path_l2: the l1 / l2 norms of the path weights U[h,i] V[h,j] over all paths.)
template <class T>
void measures(const T* U, const T* V, const int64_t* offsets, int64_t N, int64_t d, int64_t k, double* l2_penalty,
              double* group_l1, double* path_l1, double* path_l2, double* norm_U, double* norm_V, int threads);

// Per unit: ||u_h||^2 - ||v_h||^2 (conserved by gradient flow on any loss).
template <class T>
void unit_balance(const T* U, const T* V, int64_t S, int64_t d, int64_t k, double* out, int threads);

}  // namespace pyireg
