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
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
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

// The first n (0 < n < lanes) elements of a vector: loaded with the other lanes zero, or
// stored leaving the memory after them untouched. Masked loads on AVX-512 and AVX2 (no fault
// past the end), masked stores on AVX-512; copies through a buffer elsewhere (AVX2's masked
// stores are microcoded on AMD Zen 2 and 3): the same lanes, the same bits.
template <class T>
inline vec<T> ld_part(const T* p, int64_t n) {
#if PYIREG_VEC_BYTES == 64 && defined(__AVX512F__)
  const unsigned m = (1u << n) - 1u;
  if constexpr (std::is_same<T, float>::value)
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p);
  else
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p);
#elif PYIREG_VEC_BYTES == 32 && defined(__AVX2__)
  if constexpr (std::is_same<T, float>::value)
    return _mm256_maskload_ps(p, __m256i(VecN<int32_t, 32>::type{0, 1, 2, 3, 4, 5, 6, 7} < static_cast<int32_t>(n)));
  else
    return _mm256_maskload_pd(p, __m256i(VecN<int64_t, 32>::type{0, 1, 2, 3} < n));
#else
  T t[VecOf<T>::W] = {};
  std::memcpy(t, p, sizeof(T) * static_cast<size_t>(n));
  return ld(t);
#endif
}
template <class T>
inline void st_part(T* p, int64_t n, vec<T> v) {
#if PYIREG_VEC_BYTES == 64 && defined(__AVX512F__)
  const unsigned m = (1u << n) - 1u;
  if constexpr (std::is_same<T, float>::value)
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v);
  else
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v);
#else  // AVX2 too: vmaskmov stores are microcoded and slow on AMD's Zen 2 and Zen 3
  T t[VecOf<T>::W];
  st(t, v);
  std::memcpy(p, t, sizeof(T) * static_cast<size_t>(n));
#endif
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
