// The CUDA-runtime stand-in of the emulated build (runtime.h): device memory is exactly sized
// host memory filled with NaN bytes, tracked so that freeing a pointer that was never allocated
// is an error, as on the GPU; copies and fills are immediate.
#include "cuda/emu/runtime.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace {
std::mutex g_lock;
std::unordered_map<void*, size_t>& live() {
  static std::unordered_map<void*, size_t> m;
  return m;
}
thread_local cudaError_t g_last = cudaSuccess;
cudaError_t fail(cudaError_t e) {
  g_last = e;
  return e;
}
}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (!p) return fail(cudaErrorInvalidValue);
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  void* m = std::malloc(bytes);
  if (!m) return fail(cudaErrorMemoryAllocation);
  std::memset(m, 0xFF, bytes);  // NaN in every float and double: a read before a write shows
  std::lock_guard<std::mutex> g(g_lock);
  live()[m] = bytes;
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> g(g_lock);
  auto it = live().find(p);
  if (it == live().end()) return fail(cudaErrorInvalidDevicePointer);
  live().erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes && (!dst || !src)) return fail(cudaErrorInvalidValue);
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return fail(cudaErrorInvalidValue);
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes && !p) return fail(cudaErrorInvalidValue);
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }
cudaError_t cudaGetDeviceCount(int* n) {
  if (!n) return fail(cudaErrorInvalidValue);
  *n = 1;  // the emulated device
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

namespace pyireg {
namespace emu {
int64_t live_allocations() {
  std::lock_guard<std::mutex> g(g_lock);
  return static_cast<int64_t>(live().size());
}
}  // namespace emu
}  // namespace pyireg
