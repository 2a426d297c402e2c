// The CUDA engine and the self-test kernels compiled by nvcc (pyireg._cuda); the emulated build
// compiles the same sources (cuda/emu/engine_emu.cpp).
#include "cuda/cuda_engine.inc"
#include "cuda/selftest.inc"
