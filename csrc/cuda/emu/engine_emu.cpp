// The CUDA engine and the self-test kernels built by the host compiler through the emulation
// (pyireg._cuda_emu): the same sources nvcc compiles for pyireg._cuda.
#include "cuda/cuda_engine.inc"
#include "cuda/selftest.inc"
