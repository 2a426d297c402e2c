// An emulation of the CUDA execution model on the CPU, so that kernels written once in portable
// CUDA C++ (csrc/cuda/*.cuh) compile with the host compiler and run, checked, on any machine.
//
// Each CUDA thread is a fiber; the threads of a block run on one CPU thread, switching only at
// barriers and warp collectives, in a selectable order (forward, reverse, seeded random), so a
// missing barrier shows as results that change with the order. Blocks are spread over CPU
// threads. Errors that are undefined behaviour on a GPU raise pyireg::emu::Error instead:
// barrier divergence (a thread exits, or waits at another barrier, while others wait), deadlock,
// a warp collective whose mask names a lane that does not exist or has exited (or leaves out
// the caller), mismatched collectives, and launch limits (threads per block, grid size, shared
// memory). A shuffle that reads a lane outside its mask gets all-ones bits (NaN: the GPU's value is
// undefined). Shared memory is allocated exactly sized per declaration and filled with NaN bytes.
// What this cannot see is listed in docs/cuda.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/emu/runtime.h"

namespace pyireg {
namespace emu {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct uint3 {
  unsigned x, y, z;
};

enum class Schedule : int { forward = 0, reverse = 1, random = 2 };

// Process-wide settings of the emulation (the Python side sets them in pyireg.cuda.emulate).
void set_schedule(Schedule s, uint64_t seed);
Schedule schedule();
uint64_t schedule_seed();
void set_threads(int n);  // CPU threads that run blocks (1 .. 64)
int threads();
uint64_t launches();  // kernels launched since the process started
// Limits checked at launch (the GPU's: sm_90).
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimYZ = 65535;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // static + dynamic without an opt-in

struct Block;
// The running CUDA thread (one per fiber); null outside a kernel.
struct Thread {
  uint3 tid;
  unsigned linear, lane, warp;
  Block* block;
};
struct Block {
  uint3 bid;
  dim3 bdim, gdim;
};
extern thread_local Thread* g_thread;

// Runs body in every thread of every block (the kernel's launch; `name` for messages).
void launch(const char* name, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream, std::function<void()> body);

// Barriers and collectives (line: the caller's source line, for messages).
void syncthreads(int line);
int syncthreads_count(int pred, int line);
enum class Coll : int { sync = 0, idx, up, down, bxor, ballot, any, all };
// The collective `kind` of the calling lane; value: its operand's bits; arg: source lane, delta or
// lane mask; returns the result's bits.
uint64_t collective(Coll kind, unsigned mask, uint64_t value, int arg, int width, int line);
// Shared memory of the calling block: the n-th declaration the calling thread executes gets the
// block's n-th array (exactly sized, NaN bytes); dynamic: the launch's dynamic shared memory.
void* shared_array(size_t bytes, size_t align, int line);
void* dynamic_shared();
[[noreturn]] void fail(const std::string& what);  // raise from inside a kernel

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp shuffles take values of up to 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// The kernel launcher behind PYIREG_LAUNCH: arguments are copied, as a real launch copies them.
template <class K>
struct Launcher {
  const char* name;
  K kernel;
  dim3 grid, block;
  size_t shmem;
  cudaStream_t stream;
  template <class... A>
  void operator()(A... args) const {
    K k = kernel;
    launch(name, grid, block, shmem, stream, [=]() { k(args...); });
  }
};
template <class K>
Launcher<K> make_launcher(const char* name, K k, dim3 g, dim3 b, size_t s, cudaStream_t st) {
  return Launcher<K>{name, k, g, b, s, st};
}

// ---------------------------------------------------------------- atomics (CUDA's meaning)
template <class T>
inline T atomic_add(T* p, T v) {
  if constexpr (std::is_integral<T>::value) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  } else {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T want;
    do {
      want = old + v;
    } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
  }
}
template <class T>
inline T atomic_max(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T>
inline T atomic_min(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T>
inline T atomic_cas(T* p, T compare, T val) {
  __atomic_compare_exchange_n(p, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
template <class T>
inline T atomic_exch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}

}  // namespace emu
}  // namespace pyireg

// ---------------------------------------------------------------- CUDA's names
using pyireg::emu::uint3;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define threadIdx (::pyireg::emu::g_thread->tid)
#define blockIdx (::pyireg::emu::g_thread->block->bid)
#define blockDim (::pyireg::emu::g_thread->block->bdim)
#define gridDim (::pyireg::emu::g_thread->block->gdim)
#define warpSize 32
#define __syncthreads() ::pyireg::emu::syncthreads(__LINE__)
#define __syncthreads_count(p) ::pyireg::emu::syncthreads_count((p) ? 1 : 0, __LINE__)
#define __syncthreads_or(p) (::pyireg::emu::syncthreads_count((p) ? 1 : 0, __LINE__) != 0)
#define __syncthreads_and(p) \
  (::pyireg::emu::syncthreads_count((p) ? 1 : 0, __LINE__) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z))
#define __syncwarp(...) ::pyireg::emu::SyncWarp{__LINE__}(__VA_ARGS__)
#define __shfl_sync(...) ::pyireg::emu::Shfl{::pyireg::emu::Coll::idx, __LINE__}(__VA_ARGS__)
#define __shfl_up_sync(...) ::pyireg::emu::Shfl{::pyireg::emu::Coll::up, __LINE__}(__VA_ARGS__)
#define __shfl_down_sync(...) ::pyireg::emu::Shfl{::pyireg::emu::Coll::down, __LINE__}(__VA_ARGS__)
#define __shfl_xor_sync(...) ::pyireg::emu::Shfl{::pyireg::emu::Coll::bxor, __LINE__}(__VA_ARGS__)
#define __ballot_sync(m, p) \
  static_cast<unsigned>(::pyireg::emu::collective(::pyireg::emu::Coll::ballot, m, (p) ? 1 : 0, 0, 32, __LINE__))
#define __any_sync(m, p) \
  static_cast<int>(::pyireg::emu::collective(::pyireg::emu::Coll::any, m, (p) ? 1 : 0, 0, 32, __LINE__))
#define __all_sync(m, p) \
  static_cast<int>(::pyireg::emu::collective(::pyireg::emu::Coll::all, m, (p) ? 1 : 0, 0, 32, __LINE__))
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __ldg(p) (*(p))

namespace pyireg {
namespace emu {
// Call wrappers that keep the caller's line (CUDA's optional arguments: __syncwarp's mask, the
// shuffles' width).
struct SyncWarp {
  int line;
  void operator()(unsigned mask = 0xffffffffu) const { collective(Coll::sync, mask, 0, 0, 32, line); }
};
struct Shfl {
  Coll kind;
  int line;
  template <class T>
  T operator()(unsigned mask, T v, int arg, int width = 32) const {
    return from_bits<T>(collective(kind, mask, to_bits(v), arg, width, line));
  }
};
}  // namespace emu
}  // namespace pyireg

template <class T>
inline T atomicAdd(T* p, T v) {
  return pyireg::emu::atomic_add(p, v);
}
template <class T>
inline T atomicMax(T* p, T v) {
  return pyireg::emu::atomic_max(p, v);
}
template <class T>
inline T atomicMin(T* p, T v) {
  return pyireg::emu::atomic_min(p, v);
}
template <class T>
inline T atomicCAS(T* p, T c, T v) {
  return pyireg::emu::atomic_cas(p, c, v);
}
template <class T>
inline T atomicExch(T* p, T v) {
  return pyireg::emu::atomic_exch(p, v);
}

// Portable spellings (csrc/cuda/portable.h gives nvcc's).
#define PYIREG_LAUNCH(grid, block, shmem, stream, ...) \
  ::pyireg::emu::make_launcher(#__VA_ARGS__, __VA_ARGS__, grid, block, shmem, stream)
#define PYIREG_SHARED(T, name, n) \
  T* name = static_cast<T*>(::pyireg::emu::shared_array(sizeof(T) * (n), alignof(T), __LINE__))
#define PYIREG_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::pyireg::emu::dynamic_shared())
