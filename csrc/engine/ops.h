// The operations of the engine as raw pointers and sizes: what every kernel gets (Ctx, Targets,
// UpdateRule) and the table of kernels one SIMD target provides (Kernels). The kernels live in
// csrc/cpu/ and are compiled once per target; dispatch.cpp picks a table at run time.
//
// Layouts: U is S x d and V is S x k, row h = hidden unit h (unit-major); network n owns rows
// offsets[n] .. offsets[n+1]. X is B x d. Outputs and upstream gradients are N x B x k.
#pragma once

#include <cstdint>
#include <string>

#include "engine/plan.h"
#include "engine/workspace.h"

namespace pyireg {

enum class Activation : int { relu = 0, linear = 1 };
enum class Loss : int { cross_entropy = 0, squared = 1 };
enum class Rule : int { momentum_sgd = 0, path_sgd = 1, ddp_sgd = 2 };

struct Ctx {
  const Plan* plan = nullptr;
  Activation act = Activation::relu;
  int threads = 1;  // OpenMP threads of this call; per-thread scratch is sized by it
};

// What a loss compares the outputs with.
//   cross_entropy: labels (B) in [0, k); mean over the batch of -log softmax(out)[y].
//   squared: values (B x k), optional entry weights (B x k, null = all ones);
//            mean over the batch of 1/2 sum_j w_bj (out_bj - y_bj)^2.
template <class T>
struct Targets {
  Loss loss = Loss::cross_entropy;
  const int32_t* labels = nullptr;
  const T* values = nullptr;
  const T* weights = nullptr;
};

// An update rule and its arguments: per-weight state shaped like U and V, and per-network
// hyper-parameters (length N). momentum_sgd and path_sgd keep momentum buffers in the state;
// ddp_sgd reads its per-weight scaling from it (computed by Kernels::ddp_scale) and has no
// momentum (the engine requires momentum = 0 for it).
template <class T>
struct UpdateRule {
  Rule rule = Rule::momentum_sgd;
  T* state_U = nullptr;
  T* state_V = nullptr;
  const T* lr = nullptr;
  const T* momentum = nullptr;
  const T* weight_decay = nullptr;
};

template <class T>
struct Kernels {
  // out (N x B x k) = the networks' outputs on X; with act (S x Bp, Bp = B rounded up to
  // simd_width), the hidden activations are kept there for a later backward.
  void (*forward)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, T* out, T* act);
  // Gradients of sum_n <dOut[n], out[n]> with respect to U, V and X (any of gU, gV, gX may be
  // null; gX is summed over networks). With act (from forward on the same weights and batch),
  // the first layer is not computed again.
  void (*backward)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const T* dOut,
                   T* gU, T* gV, T* gX, const T* act);
  // Per-network mean loss (N) and its gradients with respect to U and V.
  void (*loss_and_grad)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B,
                        const Targets<T>&, double* loss, T* gU, T* gV);
  // One fused step of the rule on every network; loss (N) is the mean loss before the step.
  void (*step)(Workspace<T>&, const Ctx&, T* U, T* V, const T* X, int64_t B, const Targets<T>&,
               const UpdateRule<T>&, double* loss);
  // The rule applied to given gradients (the unfused oracle of step).
  void (*apply_update)(const Ctx&, T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>&);
  // Summed loss (N) and wrong predictions (N, cross-entropy only) over B samples in blocks.
  void (*evaluate)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B,
                   const Targets<T>&, int64_t block, double* loss, int64_t* errors);
  // Per unit h (S), summed over the B samples of X in blocks of `block`, in double:
  // z2[h] = sum_b z_hb^2 and a2[h] = sum_b act(z_hb)^2, z = U X^T (any U of the model's shape).
  void (*unit_moments)(Workspace<T>&, const Ctx&, const T* U, const T* X, int64_t B, int64_t block,
                       double* z2, double* a2);
  // The DDP-SGD scaling 1 / kappa of every weight (kU: S x d, kV: S x k) from the batch X (B
  // samples), the weights and the per-network alpha (N); see kernels.h.
  void (*ddp_scale)(Workspace<T>&, const Ctx&, const T* U, const T* V, const T* X, int64_t B, const T* alpha,
                    T* kU, T* kV);
};

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// The padding unit of batches and features, in elements of T: 32 bytes on every target (the
// AVX-512 kernels end a row with a 32-byte vector), so layouts do not depend on the target.
template <class T> constexpr int64_t simd_width() { return 32 / sizeof(T); }

// Row stride of the transposed batch XT (d x Bp, the B operand of the first-layer GEMM): one
// vector more when a row is a multiple of 256 bytes, so that the rows of a 16-column panel do
// not all fall into the same few L1 sets (measured in benchmarks/kernels/README.md).
template <class T> constexpr int64_t xt_stride(int64_t Bp) {
  return (Bp * static_cast<int64_t>(sizeof(T))) % 256 == 0 ? Bp + simd_width<T>() : Bp;
}

// Most coefficients per row an update rule may use.
constexpr int kMaxRuleCoefs = 8;
// Per-thread scratch (elements) of the backward: dZ^T (cu x Bp), dU (cu x dp), dV (cu x k) and
// the rule coefficients of the chunk's U and V rows.
inline int64_t backward_thread_scratch(const Plan& p, int64_t Bp, int64_t dp) {
  const int64_t cu = p.chunk_units;
  return cu * Bp + cu * dp + cu * p.k + 2 * kMaxRuleCoefs * cu;
}

namespace generic {
template <class T> const Kernels<T>& kernels();
}
#if defined(PYIREG_HAVE_AVX2)
namespace avx2 {
template <class T> const Kernels<T>& kernels();
}
#endif
#if defined(PYIREG_HAVE_AVX512)
namespace avx512 {
template <class T> const Kernels<T>& kernels();
}
#endif

// Run-time choice of the SIMD target (dispatch.cpp): the widest the CPU supports by default.
enum class Simd : int { generic = 0, avx2 = 1, avx512 = 2 };
Simd active_simd();
bool simd_available(Simd s);
void set_simd(Simd s);  // throws std::invalid_argument if s is not available
Simd simd_from_name(const std::string& name);  // "generic", "avx2", "avx512"; throws otherwise
const char* simd_name(Simd s);
template <class T> const Kernels<T>& active_kernels();

// Threads used by every kernel, process-wide (not per calling thread). OMP_NUM_THREADS sets the
// initial value; set_num_threads accepts 1 .. max_num_threads() = 4 x the processors OpenMP sees.
int num_threads();
int max_num_threads();
void set_num_threads(int n);  // throws std::invalid_argument outside [1, max_num_threads()]

}  // namespace pyireg
