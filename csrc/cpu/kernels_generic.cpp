// The CPU kernels for the baseline instruction set of the target (portable fallback).
#define PYIREG_ISA generic
#include "cpu/kernels.h"
