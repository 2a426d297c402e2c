// The cuBLAS stand-in of the emulated build (cuda/blas.h): GEMM with cuBLAS's argument checks
// (cublas_api.h's rules for m, n, k, the operations and the leading dimensions) and column-major
// semantics, C = alpha op(A) op(B) + beta C; beta = 0 never reads C (cuBLAS's rule, so C may hold
// NaN). Each element is one dot product summed in the working precision in index order with
// fused multiply-adds, as a GPU thread accumulates a tile; the TF32 math mode rounds the float
// inputs to TF32's 10-bit mantissa first.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <type_traits>

#include "cuda/blas.h"

namespace pyireg {
namespace blas {

struct Context {
  cudaStream_t stream = nullptr;
  Math math = DEFAULT_MATH;
};

namespace {
std::mutex g_lock;
std::set<Handle>& handles() {
  static std::set<Handle> s;
  return s;
}
bool valid(Handle h) {
  std::lock_guard<std::mutex> g(g_lock);
  return handles().count(h) != 0;
}

Status create(Handle* h) {
  if (!h) return STATUS_INVALID_VALUE;
  *h = new Context();
  std::lock_guard<std::mutex> g(g_lock);
  handles().insert(*h);
  return STATUS_SUCCESS;
}
Status destroy(Handle h) {
  {
    std::lock_guard<std::mutex> g(g_lock);
    if (!handles().erase(h)) return STATUS_NOT_INITIALIZED;
  }
  delete h;
  return STATUS_SUCCESS;
}
Status set_stream(Handle h, cudaStream_t s) {
  if (!valid(h)) return STATUS_NOT_INITIALIZED;
  h->stream = s;
  return STATUS_SUCCESS;
}
Status set_math_mode(Handle h, Math m) {
  if (!valid(h)) return STATUS_NOT_INITIALIZED;
  if (m != DEFAULT_MATH && m != TF32_TENSOR_OP_MATH) return STATUS_INVALID_VALUE;
  h->math = m;
  return STATUS_SUCCESS;
}

inline float tf32(float x) {  // round to nearest, 10 explicit mantissa bits
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&x, &u, 4);
  return x;
}

template <class T>
Status gemm(Handle h, Op ta, Op tb, int m, int n, int k, const T* alpha, const T* A, int lda, const T* B, int ldb,
            const T* beta, T* C, int ldc) {
  if (!valid(h)) return STATUS_NOT_INITIALIZED;
  if ((ta != OP_N && ta != OP_T) || (tb != OP_N && tb != OP_T)) return STATUS_INVALID_VALUE;
  if (m < 0 || n < 0 || k < 0) return STATUS_INVALID_VALUE;
  const int rows_a = ta == OP_N ? m : k, rows_b = tb == OP_N ? k : n;
  if (lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) || ldc < std::max(1, m)) return STATUS_INVALID_VALUE;
  if (!alpha || !beta) return STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return STATUS_SUCCESS;
  const bool round = std::is_same<T, float>::value && h->math == TF32_TENSOR_OP_MATH;
  auto a = [&](int i, int p) {
    const T v = ta == OP_N ? A[i + int64_t(p) * lda] : A[p + int64_t(i) * lda];
    return round ? T(tf32(float(v))) : v;
  };
  auto b = [&](int p, int j) {
    const T v = tb == OP_N ? B[p + int64_t(j) * ldb] : B[j + int64_t(p) * ldb];
    return round ? T(tf32(float(v))) : v;
  };
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      T s = T(0);
      for (int p = 0; p < k; ++p) s = std::fma(a(i, p), b(p, j), s);
      T& c = C[i + int64_t(j) * ldc];
      c = *beta == T(0) ? *alpha * s : *alpha * s + *beta * c;
    }
  return STATUS_SUCCESS;
}
Status sgemm(Handle h, Op ta, Op tb, int m, int n, int k, const float* al, const float* A, int lda, const float* B,
             int ldb, const float* be, float* C, int ldc) {
  return gemm<float>(h, ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
Status dgemm(Handle h, Op ta, Op tb, int m, int n, int k, const double* al, const double* A, int lda, const double* B,
             int ldb, const double* be, double* C, int ldc) {
  return gemm<double>(h, ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
}  // namespace

const Api& api() {
  static const Api a{&create, &destroy, &set_stream, &set_math_mode, &sgemm, &dgemm};
  return a;
}
void set_library_path(const std::string&) {}

}  // namespace blas
}  // namespace pyireg
