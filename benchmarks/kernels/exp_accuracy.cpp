// Kernel sandbox: the error of exp_lanes (csrc/cpu/losses.h), the exp of the float softmax
// cross-entropy, against double exp on every 16th float from -104 to 88.73, in ulps of the
// float result (subnormal results in units of the smallest subnormal), and its special values.
// Build and run from the repository root:
//   g++ -O2 -std=c++17 -mavx512f -mavx512vl -mfma -ffp-contract=fast -DPYIREG_ISA=avx512 \
//       -DPYIREG_VEC_BYTES=64 -Icsrc benchmarks/kernels/exp_accuracy.cpp -o exp_accuracy
//   ./exp_accuracy        (or -mavx2 -mfma -DPYIREG_ISA=avx2 for the AVX2 kernels: the same bits)
#include <cmath>
#include <cstdio>

#ifndef PYIREG_ISA
#define PYIREG_ISA avx2
#endif
#include "cpu/losses.h"

using namespace pyireg::PYIREG_ISA;

static double ulp_error(float got, double want) {
  if (std::isinf(static_cast<float>(want))) return std::isinf(got) ? 0.0 : 1e30;
  if (want < 1.17549435e-38) return std::fabs(got - want) / 1.40129846e-45;
  int e;
  std::frexp(want, &e);
  return std::fabs(got - want) / std::ldexp(1.0, e - 24);
}

int main() {
  double worst = 0;
  float at = 0;
  long checked = 0, i = 0;
  for (float x = -104.f; x < 88.73f; x = std::nextafter(x, 100.f)) {
    if ((i++ & 15) != 0) continue;
    ++checked;
    const double err = ulp_error(exp_lanes(splat(x))[1], std::exp(static_cast<double>(x)));
    if (err > worst) {
      worst = err;
      at = x;
    }
  }
  std::printf("%ld floats checked: worst error %.3f ulp at x = %.9g\n", checked, worst, at);
  const float special[] = {-INFINITY, -1000.f, -104.1f, -100.f, -87.34f, 0.f, 88.8f, INFINITY, NAN};
  for (float x : special) std::printf("exp_lanes(%g) = %g, libm %g\n", x, exp_lanes(splat(x))[0], std::exp(x));
  return 0;
}
