// SIMD helpers of the CPU kernels, written with GCC/Clang vector extensions. Compiled once per
// SIMD target, in namespace pyireg::PYIREG_ISA (see kernels.h), so each target compiles them
// with its own instruction set. Two vector types:
//   vec<T>    the target's width (PYIREG_VEC_BYTES: 32 bytes, 8 floats, for generic and AVX2;
//             64 bytes, 16 floats, for AVX-512), used where every element is computed on its own
//             (the GEMM tiles, the second layer, the update rules);
//   vec32<T>  32 bytes on every target: the padding unit of batches and features (simd_width in
//             cpu/cpu.h) and the lanes of the sums across a row (dV, the data moments), so that
//             every target adds the same numbers in the same order and gets the same bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef PYIREG_ISA
#error "define PYIREG_ISA (the SIMD target's namespace) before including this header"
#endif
#ifndef PYIREG_VEC_BYTES
#define PYIREG_VEC_BYTES 32
#endif

namespace pyireg {
namespace PYIREG_ISA {

template <class T, int BYTES>
struct VecN {
  typedef T type __attribute__((vector_size(BYTES)));
  static constexpr int W = BYTES / static_cast<int>(sizeof(T));
};
template <class T>
struct VecOf : VecN<T, PYIREG_VEC_BYTES> {};
template <class T>
using vec = typename VecOf<T>::type;
template <class T>
using vec32 = typename VecN<T, 32>::type;

// Lanes of a vector type.
template <class V>
using elem_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V&>()[0])>>;
template <class V>
constexpr int lanes() {
  return static_cast<int>(sizeof(V) / sizeof(elem_t<V>));
}

// Unaligned loads and stores (memcpy compiles to one vmovups/vmovupd).
template <class V, class T>
inline V ldv(const T* p) {
  V r;
  std::memcpy(&r, p, sizeof r);
  return r;
}
template <class T>
inline vec<T> ld(const T* p) {
  return ldv<vec<T>>(p);
}
template <class T>
inline vec32<T> ld32(const T* p) {
  return ldv<vec32<T>>(p);
}
template <class T, class V>
inline void st(T* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

// Brace initialization compiles to a single vbroadcast (from memory when s is loaded); the
// shorter `V{} + s` costs an extra scalar add, since 0 + s is not s for s = -0.
template <class V, class T, std::size_t... I>
inline V splat_lanes(T s, std::index_sequence<I...>) {
  return V{((void)I, s)...};
}
template <class V, class T>
inline V splatv(T s) {
  return splat_lanes<V>(s, std::make_index_sequence<lanes<V>()>{});
}
template <class T>
inline vec<T> splat(T s) {
  return splatv<vec<T>>(s);
}
template <class T>
inline vec32<T> splat32(T s) {
  return splatv<vec32<T>>(s);
}

// Lanes added in index order.
template <class T, class V>
inline T hsum(V v) {
  T s = 0;
  for (int i = 0; i < lanes<V>(); ++i) s += v[i];
  return s;
}
// relu that keeps NaN (as torch.relu does), so a diverged network stays visibly diverged
template <class V>
inline V relu(V v) {
  return v < 0 ? V{} : v;
}

inline int thread_id() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace PYIREG_ISA
}  // namespace pyireg
