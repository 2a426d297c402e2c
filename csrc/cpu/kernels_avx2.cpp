// The CPU kernels compiled for AVX2 + FMA (this file alone gets -mavx2 -mfma); dispatch.cpp
// uses them only when the running CPU reports both.
#define PYIREG_ISA avx2
#include "cpu/kernels.h"
