// The packed-network kernels compiled for AVX2 + FMA (this file alone gets -mavx2 -mfma);
// dispatch.cpp calls them only when the running CPU reports both.
#define PYIREG_ISA avx2
#include "packed_mlp_impl.h"
