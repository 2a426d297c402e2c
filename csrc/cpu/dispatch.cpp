// Run-time choice of the SIMD target (the kernel table in use) and the process-wide thread count.
#include <atomic>
#include <stdexcept>
#include <string>

#include "cpu/cpu.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace pyireg {

bool simd_available(Simd s) {
  switch (s) {
    case Simd::generic: return true;
    case Simd::avx2:
#if defined(PYIREG_HAVE_AVX2)
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case Simd::avx512:
#if defined(PYIREG_HAVE_AVX512)
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Simd simd_from_name(const std::string& name) {
  if (name == "generic") return Simd::generic;
  if (name == "avx2") return Simd::avx2;
  if (name == "avx512") return Simd::avx512;
  throw std::invalid_argument("simd: expected one of generic, avx2, avx512, got '" + name + "'");
}

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::generic: return "generic";
    case Simd::avx2: return "avx2";
    case Simd::avx512: return "avx512";
  }
  return "generic";
}

namespace {
Simd best_simd() {
  if (simd_available(Simd::avx512)) return Simd::avx512;
  return simd_available(Simd::avx2) ? Simd::avx2 : Simd::generic;
}
std::atomic<Simd> g_simd{best_simd()};

int initial_threads() {
#if defined(_OPENMP)
  // OMP_NUM_THREADS, else the processors, clamped to set_num_threads's bound [1, 4 x the
  // processors]: beyond it libgomp fails to create threads, or per-thread scratch overflows
  const int n = omp_get_max_threads(), hi = 4 * omp_get_num_procs();
  return n < 1 ? 1 : (n > hi ? hi : n);
#else
  return 1;
#endif
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

Simd active_simd() { return g_simd.load(); }
void set_simd(Simd s) {
  if (!simd_available(s))
    throw std::invalid_argument(std::string("simd: '") + simd_name(s) + "' is not available on this CPU/build");
  g_simd.store(s);
}

template <class T>
const Kernels<T>& active_kernels() {
  switch (g_simd.load()) {
#if defined(PYIREG_HAVE_AVX512)
    case Simd::avx512: return avx512::kernels<T>();
#endif
#if defined(PYIREG_HAVE_AVX2)
    case Simd::avx2: return avx2::kernels<T>();
#endif
    default: return generic::kernels<T>();
  }
}
template const Kernels<float>& active_kernels<float>();
template const Kernels<double>& active_kernels<double>();

int64_t l2_cache_bytes() {
  static const int64_t bytes = read_l2_cache_bytes();
  return bytes;
}

bool prefetch_ahead() { return l2_cache_bytes() >= kAheadMinL2Bytes; }

int num_threads() { return g_threads.load(); }

int max_num_threads() {
#if defined(_OPENMP)
  return 4 * omp_get_num_procs();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  const int hi = max_num_threads();
  if (n < 1 || n > hi)
    throw std::invalid_argument("num_threads: expected an integer in [1, " + std::to_string(hi) +
                                "] (4 x the processors; 1 without OpenMP), got " + std::to_string(n));
  g_threads.store(n);
}

}  // namespace pyireg
