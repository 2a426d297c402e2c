// The packed-network kernels for the baseline instruction set of the target (portable fallback).
#define PYIREG_ISA generic
#include "packed_mlp_impl.h"
