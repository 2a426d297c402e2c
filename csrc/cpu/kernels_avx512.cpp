// The CPU kernels compiled for AVX-512 (this file alone gets -mavx512f -mavx512vl -mfma) with
// 64-byte vectors; dispatch.cpp uses them only when the running CPU reports AVX-512F and VL.
// They give the same bits as the AVX2 kernels (see simd.h and gemm.h).
#define PYIREG_ISA avx512
#define PYIREG_VEC_BYTES 64
#include "cpu/kernels.h"
