// What lets a kernel be written once in CUDA C++ and compiled twice: by nvcc for the GPU, and
// by the host compiler through the emulation (cuda/emu/emu.h). Kernels use CUDA's own names
// (threadIdx, __syncthreads, __shfl_down_sync, atomicAdd, ...) and three portable spellings:
//   PYIREG_LAUNCH(grid, block, shmem, stream, kernel)(args...)   a launch
//   PYIREG_SHARED(T, name, n);                                   a __shared__ array of n T
//   PYIREG_DYNAMIC_SHARED(T, name);                              the launch's dynamic shared memory
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define PYIREG_EMULATED 0
#define PYIREG_LAUNCH(grid, block, shmem, stream, ...) __VA_ARGS__<<<grid, block, shmem, stream>>>
#define PYIREG_SHARED(T, name, n) __shared__ T name[n]
#define PYIREG_DYNAMIC_SHARED(T, name)                         \
  extern __shared__ __align__(16) unsigned char pyireg_dsm_[]; \
  T* name = reinterpret_cast<T*>(pyireg_dsm_)
#else
#include "cuda/emu/emu.h"
#define PYIREG_EMULATED 1
#endif
