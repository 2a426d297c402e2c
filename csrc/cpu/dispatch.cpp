// Run-time choice of the SIMD target and thread count, and the public kernel entry points that
// forward to the chosen target.
#include <stdexcept>

#include "packed_mlp.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace pyireg {

bool simd_available(Simd s) {
  if (s == Simd::generic) return true;
#if defined(PYIREG_HAVE_AVX2)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

static Simd best_simd() { return simd_available(Simd::avx2) ? Simd::avx2 : Simd::generic; }
static Simd g_simd = best_simd();

Simd active_simd() { return g_simd; }
void set_simd(Simd s) {
  if (!simd_available(s)) throw std::invalid_argument("simd: that target is not available on this CPU/build");
  g_simd = s;
}

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}
void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads: expected a positive integer");
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

#if defined(PYIREG_HAVE_AVX2)
#define PYIREG_DISPATCH(fn)                                           \
  template <class T> void fn(Workspace<T>& ws, const Call<T>& c) {    \
    if (g_simd == Simd::avx2) avx2::fn<T>(ws, c);                     \
    else generic::fn<T>(ws, c);                                       \
  }                                                                   \
  template void fn<float>(Workspace<float>&, const Call<float>&);     \
  template void fn<double>(Workspace<double>&, const Call<double>&);
#else
#define PYIREG_DISPATCH(fn)                                                               \
  template <class T> void fn(Workspace<T>& ws, const Call<T>& c) { generic::fn<T>(ws, c); } \
  template void fn<float>(Workspace<float>&, const Call<float>&);                         \
  template void fn<double>(Workspace<double>&, const Call<double>&);
#endif

PYIREG_DISPATCH(forward)
PYIREG_DISPATCH(loss_grad)
PYIREG_DISPATCH(sgd_step)
PYIREG_DISPATCH(evaluate)

}  // namespace pyireg
