// The few cuBLAS entry points the CUDA engine uses, declared by pyireg itself so that building
// needs nvcc alone: on the GPU build they are found at run time in libcublas.so.13 (dlopen,
// cuda/blas_loader.cpp); on the emulated build they are the stand-in of cuda/emu/blas_emu.cpp.
// The types and constants are cuBLAS's own (cublas_api.h): column-major, v2 API.
#pragma once

#include <string>

#if defined(__CUDACC__) || defined(PYIREG_CUDA_REAL)
#include <cuda_runtime.h>
#else
#include "cuda/emu/runtime.h"
#endif

namespace pyireg {
namespace blas {

struct Context;
typedef Context* Handle;  // cublasHandle_t

enum Status : int {
  STATUS_SUCCESS = 0,
  STATUS_NOT_INITIALIZED = 1,
  STATUS_ALLOC_FAILED = 3,
  STATUS_INVALID_VALUE = 7,
  STATUS_ARCH_MISMATCH = 8,
  STATUS_EXECUTION_FAILED = 13,
  STATUS_INTERNAL_ERROR = 14,
  STATUS_NOT_SUPPORTED = 15,
};
enum Op : int { OP_N = 0, OP_T = 1 };
enum Math : int { DEFAULT_MATH = 0, TF32_TENSOR_OP_MATH = 3 };

// The functions of the library in use (a table of pointers: one per build).
struct Api {
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  Status (*set_stream)(Handle, cudaStream_t);
  Status (*set_math_mode)(Handle, Math);
  Status (*sgemm)(Handle, Op, Op, int, int, int, const float*, const float*, int, const float*, int, const float*,
                  float*, int);
  Status (*dgemm)(Handle, Op, Op, int, int, int, const double*, const double*, int, const double*, int, const double*,
                  double*, int);
};

// The table; throws std::runtime_error with a clear message when cuBLAS cannot be loaded (the
// real build: libcublas.so.13 from `library_path`, beside torch's nvidia wheels or on the
// loader path).
const Api& api();
// Where to look for libcublas.so.13 first (set before the first api() call; empty: loader path).
void set_library_path(const std::string& path);
inline const char* status_name(Status s) {
  switch (s) {
    case STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

}  // namespace blas
}  // namespace pyireg
