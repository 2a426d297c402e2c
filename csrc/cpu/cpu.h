// The CPU's facts and the table of its kernels: the padding unit of batches and features
// (simd_width), the strides of the kernels' scratch (xt_stride, backward_thread_scratch), the
// per-call context of a kernel (Ctx: the CPU plan, the activation, the OpenMP team size), the
// kernel table one SIMD target provides (Kernels), the run-time choice of that target (Simd)
// and the process-wide thread count. The kernels live in cpu/kernels.h and are compiled once per
// target; dispatch.cpp picks a table; the CPU backend (backend_cpu.cpp) calls it. Device-neutral
// types: engine/types.h.
#pragma once

#include <cstdint>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "cpu/plan.h"
#include "cpu/workspace.h"
#include "engine/backend.h"
#include "engine/rule_coefs.h"
#include "engine/types.h"

namespace pyireg {

struct Ctx {
  const Plan* plan = nullptr;
  Activation act = Activation::relu;
  int threads = 1;     // OpenMP threads of this call; per-thread scratch is sized by it
  int slot = 0;        // first per-thread scratch slot of this call's team (a team inside a team)
  bool ahead = false;  // prefetch the next chunk's rows of U during a forward product (prefetch_ahead())
};

template <class T>
struct Kernels {
  // The operations of engine/backend.h's table, on the CPU plan and a workspace.
  void (*forward)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, T* out, T* act);
  void (*backward)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU,
                   T* gV, T* gX, const T* act);
  void (*loss_and_grad)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const Targets<T>&,
                        double* loss, T* gU, T* gV);
  void (*step)(Workspace<T>&, const Ctx&, T* U, T* V, const T* X, int64_t B, const Targets<T>&, const UpdateRule<T>&,
               double* loss);
  void (*apply_update)(const Ctx&, T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>&);
  void (*evaluate)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const Targets<T>&,
                   int64_t block, double* loss, int64_t* errors);
  void (*unit_moments)(Workspace<T>&, const Ctx&, const T* U, const T* X, int64_t B, int64_t block, double* z2,
                       double* a2);
  // see kernels.h for the formulas
  void (*ddp_scale)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU,
                    T* kV);
};

// The padding unit of batches and features, in elements of T: 32 bytes on every target (the
// AVX-512 kernels end a row with a 32-byte vector), so layouts do not depend on the target.
template <class T>
constexpr int64_t simd_width() {
  return 32 / sizeof(T);
}

// Row stride of the transposed batch XT (d x Bp, the B operand of the first-layer GEMM): one
// vector more when a row is a multiple of 256 bytes, so that the rows of a 16-column panel do
// not all fall into the same few L1 sets (measured in benchmarks/kernels/README.md).
template <class T>
constexpr int64_t xt_stride(int64_t Bp) {
  return (Bp * static_cast<int64_t>(sizeof(T))) % 256 == 0 ? Bp + simd_width<T>() : Bp;
}

// Per-thread scratch (elements) of the backward: dZ^T (cu x Bp), dU (cu x dp), dV (cu x k) and
// the rule coefficients of the chunk's U and V rows.
inline int64_t backward_thread_scratch(const Plan& p, int64_t Bp, int64_t dp) {
  const int64_t cu = p.chunk_units;
  return cu * Bp + cu * dp + cu * p.k + 2 * kMaxRuleCoefs * cu;
}

namespace generic {
template <class T>
const Kernels<T>& kernels();
}
#if defined(PYIREG_HAVE_AVX2)
namespace avx2 {
template <class T>
const Kernels<T>& kernels();
}
#endif
#if defined(PYIREG_HAVE_AVX512)
namespace avx512 {
template <class T>
const Kernels<T>& kernels();
}
#endif

// Run-time choice of the SIMD target (dispatch.cpp): the widest the CPU supports by default.
enum class Simd : int { generic = 0, avx2 = 1, avx512 = 2 };
Simd active_simd();
bool simd_available(Simd s);
void set_simd(Simd s);                         // throws std::invalid_argument if s is not available
Simd simd_from_name(const std::string& name);  // "generic", "avx2", "avx512"; throws otherwise
const char* simd_name(Simd s);
template <class T>
const Kernels<T>& active_kernels();

// The L2 cache of the calling core in bytes, read from CPUID leaf 0x80000006 (ECX[31:16], KiB;
// AMD and Intel); 0 where unknown or not x86. l2_cache_bytes() reads it once. It is the size of
// one L2, not a core's share of it: Intel's E-core modules share 2 MiB among four cores, and a
// hybrid CPU answers for the core that asks; some hypervisors report a legacy value.
inline int64_t read_l2_cache_bytes() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0x80000006, &a, &b, &c, &d)) return 0;
  return static_cast<int64_t>(c >> 16) * 1024;
#else
  return 0;
#endif
}
int64_t l2_cache_bytes();
// The L2 size from which prefetch_ahead() is on.
constexpr int64_t kAheadMinL2Bytes = int64_t(1) << 20;
// Whether the forward product prefetches the next chunk's rows of U (gemm.h Ahead): on hosts
// with at least 1 MiB of L2 per core. Measured on the dense step's forward (phase sandbox, one
// thread): a gain on the AVX-512 Xeon (2 MiB: 117-122 -> 108 ms) and on Zen 4 (1 MiB: 123-126 ->
// 115-116 ms), a 14% loss on Zen 3 (512 KiB: 137-141 -> 155-163 ms), where the next chunk's rows
// evict the current chunk's. Decided once.
bool prefetch_ahead();

// Threads used by every kernel, process-wide (not per calling thread). OMP_NUM_THREADS sets the
// initial value; set_num_threads accepts 1 .. max_num_threads() = 4 x the processors OpenMP sees.
int num_threads();
int max_num_threads();
void set_num_threads(int n);  // throws std::invalid_argument outside [1, max_num_threads()]

// The CPU backend's tables (backend_cpu.cpp), also registered as Device::cpu in engine/backend.h.
template <class T>
const Backend<T>& cpu_backend();

}  // namespace pyireg
