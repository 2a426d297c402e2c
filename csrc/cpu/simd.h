// SIMD helpers of the CPU kernels, written with GCC/Clang vector extensions (32-byte vectors:
// 8 floats or 4 doubles). Compiled once per SIMD target, in namespace pyireg::PYIREG_ISA (see
// kernels.h), so each target compiles them with its own instruction set.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef PYIREG_ISA
#error "define PYIREG_ISA (the SIMD target's namespace) before including this header"
#endif

namespace pyireg {
namespace PYIREG_ISA {

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

// Unaligned loads and stores (memcpy compiles to one vmovups/vmovupd).
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

}  // namespace PYIREG_ISA
}  // namespace pyireg
