// A stand-in for the part of the CUDA runtime and of cuBLAS that pyireg's CUDA engine uses, for
// the emulated build (csrc/cuda/emu/emu.h). Device memory is host memory: cudaMalloc returns an
// exactly sized block filled with NaN bytes (0xFF), so a read past the end is an AddressSanitizer
// report in a sanitized build and a read of memory never written is a NaN in the results.
// Streams are tokens and every operation is synchronous. cublasSgemm/Dgemm make cuBLAS's
// argument checks (a wrong leading dimension gives CUBLAS_STATUS_INVALID_VALUE) and sum each
// dot product in the working precision, in index order, with fused multiply-adds.
#pragma once

#include <cstddef>
#include <cstdint>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* n);
const char* cudaGetErrorString(cudaError_t e);

namespace pyireg {
namespace emu {
// Device allocations currently live (cudaMalloc without cudaFree), for leak checks in tests.
int64_t live_allocations();
}  // namespace emu
}  // namespace pyireg
