// The CPU engine of one packed model: its layout (offsets, d, k, activation, loss), its CPU plan,
// a pool of scratch workspaces and a lock. The weights stay with the caller (numpy arrays or
// torch tensors); every operation takes them as raw pointers, checks its arguments and sizes,
// and calls the Device::cpu backend of engine/backend.h (which picks the SIMD target).
// `Engine<T>` is this class's historical name, kept as an alias.
//
// Thread safety: read-only operations (forward, backward, loss_and_grad, evaluate, measures,
// unit_balance, unit_stats, unit_moments, ddp_scale) hold the lock shared and may run at the same time, each on a
// workspace of its own from the pool; operations that write the weights (step, apply_update, balance, normalize_units)
// hold it exclusively. Concurrent calls on one engine therefore behave as some serial order of the same calls.
//
// Sizes: every operation checks, with overflow-checked arithmetic, that its scratch fits the
// memory limit (sizes.h) before anything is allocated, and throws MemoryLimitError if not.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <shared_mutex>

#include "cpu/cpu.h"
#include "cpu/plan.h"
#include "cpu/workspace.h"
#include "engine/backend.h"
#include "engine/sizes.h"

namespace pyireg {

template <class T>
class CpuEngine {
 public:
  static constexpr Device device = Device::cpu;

  // Validates every argument (std::invalid_argument) and checks that the model's weights and
  // plan fit the memory limit (MemoryLimitError) before building the plan.
  CpuEngine(const int64_t* offsets, int64_t N, int64_t d, int64_t k, Activation act, Loss loss,
            int64_t chunk_units = 192, int64_t group_units = 512);

  const Plan& plan() const { return *plan_; }
  const Layout& layout() const { return *plan_; }
  Activation activation() const { return act_; }
  Loss loss() const { return loss_; }
  int64_t N() const { return plan_->N; }
  int64_t S() const { return plan_->S; }
  int64_t d() const { return plan_->d; }
  int64_t k() const { return plan_->k; }

  // Bytes of U and V together (S x (d + k) elements).
  int64_t weights_bytes() const;
  // Scratch bytes of each operation for a batch of B samples (outputs not included).
  int64_t forward_bytes(int64_t B) const;
  int64_t pass_bytes(int64_t B, bool input_grad) const;
  int64_t evaluate_bytes(int64_t B, int64_t block) const;

  // With act (S x activation_columns(B)), forward keeps the hidden activations there and
  // backward takes them instead of computing the first layer again (the autograd path).
  void forward(const T* U, const T* V, const T* X, int64_t B, T* out, T* act = nullptr) const;
  void backward(const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU, T* gV, T* gX,
                const T* act = nullptr) const;
  // Columns of the kept activations (S x activation_columns(B)): B rounded up to the SIMD width.
  static int64_t activation_columns(int64_t B) { return round_up(B, simd_width<T>()); }
  void loss_and_grad(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, double* loss, T* gU,
                     T* gV) const;
  void step(T* U, T* V, const T* X, int64_t B, const Targets<T>& t, const UpdateRule<T>& r, double* loss);
  void apply_update(T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r);
  void evaluate(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, int64_t block, double* loss,
                int64_t* errors) const;

  // Theorem 1 rescalings and per-network measures (cpu/rescale.h).
  int64_t balance(T* U, T* V);
  int64_t normalize_units(T* U, T* V);
  // out: 6 arrays of N (l2_penalty, group_l1, path_l1, path_l2, norm_U, norm_V)
  void measures(const T* U, const T* V, double* const out[6]) const;
  void unit_balance(const T* U, const T* V, double* out) const;
  // Complexity measures (cpu/measures.h, kernels.h): per-unit weight statistics (out: S x
  // kUnitStats; U0, V0 may be null, p <= 0 for none), per-unit data moments on X (z2, a2: S)
  // of the model's U or of any array of its shape (the initial weights), and the DDP-SGD
  // scaling of every weight from a batch (kU: S x d, kV: S x k; alpha: N, in [0, 1]).
  void unit_stats(const T* U, const T* V, const T* U0, const T* V0, double p, double* out) const;
  void unit_moments(const T* U, const T* X, int64_t B, int64_t block, double* z2, double* a2) const;
  void ddp_scale(const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU, T* kV) const;

  int64_t workspace_bytes() const { return pool_.bytes(); }
  int64_t workspace_allocations() const { return pool_.allocations(); }
  int64_t workspaces() const { return pool_.size(); }

 private:
  // The context of a call whose work scales with `work` (S x B x (d + k) multiply-adds for an
  // operation on a batch of B): calls below kSerialWork run on one
  // thread (starting a thread team costs more than it saves there, far more on a loaded machine,
  // and results do not depend on the thread count).
  static constexpr int64_t kSerialWork = int64_t(1) << 22;
  int threads_for(int64_t work) const { return work < kSerialWork ? 1 : num_threads(); }
  Exec exec(int64_t work, Workspace<T>* ws = nullptr) const {
    Exec e;
    e.layout = plan_;
    e.plan = plan_;
    e.act = act_;
    e.threads = threads_for(work);
    e.scratch = ws;
    return e;
  }
  // The backend of this engine's device, looked up per call.
  static const Backend<T>& be() { return backend<T>(device); }
  int64_t batch_work(int64_t B) const {  // S x B x (d + k), saturating
    int64_t a, b;
    if (__builtin_mul_overflow(plan_->S, B, &a) || __builtin_mul_overflow(a, plan_->d + plan_->k, &b)) return INT64_MAX;
    return b;
  }
  void check_batch(int64_t B) const;
  void check_targets(const Targets<T>& t, int64_t B) const;
  void check_rule(const UpdateRule<T>& r) const;

  std::shared_ptr<const void> plan_holder_;  // the backend's plan (a cpu Plan)
  const Plan* plan_ = nullptr;
  Activation act_;
  Loss loss_;
  mutable std::shared_mutex lock_;
  mutable WorkspacePool<T> pool_;
};

extern template class CpuEngine<float>;
extern template class CpuEngine<double>;

template <class T>
using Engine = CpuEngine<T>;

}  // namespace pyireg
