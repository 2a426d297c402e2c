// Small kernels that exercise the execution model (barriers, shared memory, warp collectives,
// atomics) and kernels with planted bugs (a missing barrier, an early return before a barrier, a
// read one past the end, a full warp mask in a partial warp, a deadlock, launch limits), so
// the tests can prove that the emulation (and, on a GPU, compute-sanitizer) catches each one.
// Written once in portable CUDA C++ like the engine's kernels.
#pragma once

#include <cstdint>

#include "cuda/portable.h"

namespace pyireg {
namespace selftest {

// out[i] = in[block's mirror of i]: shared memory, then a barrier (unless planted), then reads.
template <bool kBarrier>
__global__ void reverse_block(const float* in, float* out) {
  PYIREG_SHARED(float, s, 1024);
  const unsigned t = threadIdx.x, n = blockDim.x;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * n;
  s[t] = in[base + t];
  if (kBarrier) __syncthreads();
  out[base + t] = s[n - 1 - t];
}

// A planted early return before a barrier: thread 3 leaves, the others wait.
__global__ void early_return(const float* in, float* out) {
  PYIREG_SHARED(float, s, 1024);
  const unsigned t = threadIdx.x;
  if (t == 3) return;
  s[t] = in[t];
  __syncthreads();
  out[t] = s[(t + 1) % blockDim.x];
}

// A planted read one past the end: out[i] = in[i] + in[i + 1] for every i < n.
__global__ void oob_read(const float* in, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i] + in[i + 1];
}

// Per warp: the sum of its lanes' values by a shuffle-down tree (lane 0 writes). The mask is the
// warp's live lanes, or (planted) the full mask even in a partial last warp.
template <bool kFullMask>
__global__ void warp_sum(const float* in, float* out) {
  const unsigned t = threadIdx.x, lane = t % 32, warp = t / 32;
  const unsigned nw = (blockDim.x - warp * 32) < 32 ? blockDim.x - warp * 32 : 32;
  const unsigned mask = kFullMask ? 0xffffffffu : (nw == 32 ? 0xffffffffu : (1u << nw) - 1u);
  float v = in[t];
  for (unsigned off = 16; off > 0; off /= 2) {
    const float o = __shfl_down_sync(mask, v, off);
    if (lane + off < nw) v += o;
  }
  if (lane == 0) out[warp] = v;
}

// out[t] = the butterfly (xor) sum of the warp, the number of positive lanes (ballot), any, all
// and lane 0's value broadcast: five collectives with the full mask (blockDim a multiple of 32).
__global__ void warp_ops(const float* in, float* out) {
  const unsigned t = threadIdx.x;
  float v = in[t];
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  const unsigned b = __ballot_sync(0xffffffffu, in[t] > 0.0f);
  const int any = __any_sync(0xffffffffu, in[t] > 100.0f);
  const int all = __all_sync(0xffffffffu, in[t] > -100.0f);
  const float first = __shfl_sync(0xffffffffu, in[t], 0);
  const float up = __shfl_up_sync(0xffffffffu, in[t], 1);
  __syncwarp();
  out[5 * t + 0] = v;
  out[5 * t + 1] = static_cast<float>(__builtin_popcount(b));
  out[5 * t + 2] = static_cast<float>(any * 2 + all);
  out[5 * t + 3] = first;
  out[5 * t + 4] = up;
}

// A block's sum through shared memory: a tree with a barrier per level (fixed order).
__global__ void block_sum(const float* in, float* out) {
  PYIREG_SHARED(float, s, 1024);
  const unsigned t = threadIdx.x;
  s[t] = in[static_cast<int64_t>(blockIdx.x) * blockDim.x + t];
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {  // blockDim a power of two
    if (t < w) s[t] += s[t + w];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// A planted deadlock: lane 0 waits at the block barrier, the other lanes at a warp barrier
// that names lane 0.
__global__ void deadlock(float* out) {
  if (threadIdx.x == 0)
    __syncthreads();
  else
    __syncwarp();
  out[threadIdx.x] = 1.0f;
}

// Integer atomics across blocks: out[0] = the number of threads with a positive input.
__global__ void count_positive(const float* in, int* count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (in[i] > 0.0f) atomicAdd(count, 1);
}

#if PYIREG_EMULATED
// A planted request for too much shared memory (64 KiB static): ptxas rejects it at compile
// time, so only the emulation, which must catch it at run time, builds it.
__global__ void big_shared(float* out) {
  PYIREG_SHARED(float, s, 16384);
  s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = s[0];
}
#endif

}  // namespace selftest
}  // namespace pyireg
