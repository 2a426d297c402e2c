// The CPU engine of one packed model (cpu_engine.h): argument and size checks, the lock,
// workspaces from the pool, then the Device::cpu backend (which runs the kernels of the active
// SIMD target).
#include "cpu/cpu_engine.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>

namespace pyireg {

namespace {
std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

template <class T>
CpuEngine<T>::CpuEngine(const int64_t* offsets, int64_t N, int64_t d, int64_t k, Activation act, Loss loss,
                        int64_t chunk_units, int64_t group_units)
    : act_(act), loss_(loss) {
  validate_offsets(offsets, N);
  if (d < 1) throw std::invalid_argument("d: expected a positive number of input features, got " + str(d));
  if (k < 1) throw std::invalid_argument("k: expected a positive number of outputs, got " + str(k));
  const int64_t S = offsets[N];
  const int64_t w = checked_mul3(S, checked_add(d, k, "weights"), sizeof(T), "weights");
  check_fits(w, "a model of " + str(S) + " hidden units x (" + str(d) + " + " + str(k) + ") weights");
  // cpu_backend() also keeps the CPU backend's object file, and its registrar, in the link
  plan_holder_ = cpu_backend<T>().make_plan(make_layout(offsets, N, d, k), PlanOptions{chunk_units, group_units});
  plan_ = static_cast<const Plan*>(plan_holder_.get());
}

template <class T>
int64_t CpuEngine<T>::weights_bytes() const {
  return checked_mul3(plan_->S, plan_->d + plan_->k, sizeof(T), "weights");
}

template <class T>
int64_t CpuEngine<T>::forward_bytes(int64_t B) const {
  return be().scratch_bytes(*plan_, plan_, Op::forward, B, B);
}

template <class T>
int64_t CpuEngine<T>::pass_bytes(int64_t B, bool input_grad) const {
  return be().scratch_bytes(*plan_, plan_, input_grad ? Op::backward_input_grad : Op::loss_and_grad, B, B);
}

template <class T>
int64_t CpuEngine<T>::evaluate_bytes(int64_t B, int64_t block) const {
  return be().scratch_bytes(*plan_, plan_, Op::evaluate, B, block);
}

template <class T>
void CpuEngine<T>::check_batch(int64_t B) const {
  if (B < 1) throw std::invalid_argument("X: expected at least one sample, got an empty batch");
}

template <class T>
void CpuEngine<T>::check_targets(const Targets<T>& t, int64_t B) const {
  if (t.loss != loss_)
    throw std::invalid_argument(std::string("targets: expected ") +
                                (loss_ == Loss::cross_entropy ? "class labels (the model's loss is cross_entropy)"
                                                              : "real-valued targets (the model's loss is squared)"));
  if (t.loss == Loss::cross_entropy) {
    if (!t.labels) throw std::invalid_argument("y: expected class labels");
    for (int64_t b = 0; b < B; ++b)
      if (t.labels[b] < 0 || t.labels[b] >= plan_->k)
        throw std::invalid_argument("y: expected labels in [0, " + str(plan_->k) + "), got " + str(t.labels[b]) +
                                    " at index " + str(b));
  } else if (!t.values) {
    throw std::invalid_argument("y: expected real-valued targets of shape (B, k)");
  }
}

template <class T>
void CpuEngine<T>::check_rule(const UpdateRule<T>& r) const {
  if (!r.state_U || !r.state_V || !r.lr || !r.momentum || !r.weight_decay)
    throw std::invalid_argument("rule: expected state buffers and per-network hyper-parameters");
  for (int64_t n = 0; n < plan_->N; ++n) {
    if (r.rule == Rule::ddp_sgd && r.momentum[n] != 0)
      throw std::invalid_argument(
          "momentum: the ddp_sgd rule has no momentum (its state holds the scaling); "
          "expected 0, got " +
          std::to_string(r.momentum[n]) + " for network " + str(n));
    if (!(std::isfinite(r.lr[n]) && r.lr[n] >= 0))
      throw std::invalid_argument("lr: expected finite values >= 0, got " + std::to_string(r.lr[n]) + " for network " +
                                  str(n));
    if (!(r.momentum[n] >= 0 && r.momentum[n] < 1))
      throw std::invalid_argument("momentum: expected values in [0, 1), got " + std::to_string(r.momentum[n]) +
                                  " for network " + str(n));
    if (!(std::isfinite(r.weight_decay[n]) && r.weight_decay[n] >= 0))
      throw std::invalid_argument("weight_decay: expected finite values >= 0, got " +
                                  std::to_string(r.weight_decay[n]) + " for network " + str(n));
  }
  if (r.rule != Rule::adam && r.rule != Rule::adamw) return;
  if (!r.state2_U || !r.state2_V || !r.beta1 || !r.beta2 || !r.eps || !r.t)
    throw std::invalid_argument(
        "rule: adam and adamw expect second-moment buffers, beta1, beta2, eps and step numbers");
  for (int64_t n = 0; n < plan_->N; ++n) {
    if (!(r.beta1[n] >= 0 && r.beta1[n] < 1))
      throw std::invalid_argument("beta1: expected values in [0, 1), got " + std::to_string(r.beta1[n]) +
                                  " for network " + str(n));
    if (!(r.beta2[n] >= 0 && r.beta2[n] < 1))
      throw std::invalid_argument("beta2: expected values in [0, 1), got " + std::to_string(r.beta2[n]) +
                                  " for network " + str(n));
    if (!(std::isfinite(r.eps[n]) && r.eps[n] > 0))
      throw std::invalid_argument("eps: expected finite values > 0, got " + std::to_string(r.eps[n]) + " for network " +
                                  str(n));
    if (r.t[n] < 1)
      throw std::invalid_argument("t: expected step numbers >= 1, got " + str(r.t[n]) + " for network " + str(n));
  }
}

template <class T>
void CpuEngine<T>::forward(const T* U, const T* V, const T* X, int64_t B, T* out, T* act) const {
  check_batch(B);
  check_fits(forward_bytes(B), "the forward scratch for a batch of " + str(B));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().forward(exec(batch_work(B), &*ws), U, V, X, B, out, act);
}

template <class T>
void CpuEngine<T>::backward(const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU, T* gV, T* gX,
                            const T* act) const {
  check_batch(B);
  check_fits(pass_bytes(B, gX != nullptr), "the backward scratch for a batch of " + str(B));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().backward(exec(batch_work(B), &*ws), U, V, X, B, dOut, gU, gV, gX, act);
}

template <class T>
void CpuEngine<T>::loss_and_grad(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, double* loss,
                                 T* gU, T* gV) const {
  check_batch(B);
  check_targets(t, B);
  check_fits(pass_bytes(B, false), "the training scratch for a batch of " + str(B));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().loss_and_grad(exec(batch_work(B), &*ws), U, V, X, B, t, loss, gU, gV);
}

template <class T>
void CpuEngine<T>::step(T* U, T* V, const T* X, int64_t B, const Targets<T>& t, const UpdateRule<T>& r, double* loss) {
  check_batch(B);
  check_targets(t, B);
  check_rule(r);
  check_fits(pass_bytes(B, false), "the training scratch for a batch of " + str(B));
  std::unique_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().step(exec(batch_work(B), &*ws), U, V, X, B, t, r, loss);
}

template <class T>
void CpuEngine<T>::apply_update(T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r) {
  check_rule(r);
  std::unique_lock<std::shared_mutex> lock(lock_);
  be().apply_update(exec(batch_work(1)), U, V, gU, gV, r);
}

template <class T>
void CpuEngine<T>::evaluate(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, int64_t block,
                            double* loss, int64_t* errors) const {
  check_batch(B);
  if (block < 1) throw std::invalid_argument("batch_size: expected a positive integer, got " + str(block));
  check_targets(t, B);
  check_fits(evaluate_bytes(B, block), "the evaluation scratch for blocks of " + str(std::min(B, block)));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().evaluate(exec(batch_work(B), &*ws), U, V, X, B, t, block, loss, errors);
}

template <class T>
int64_t CpuEngine<T>::balance(T* U, T* V) {
  std::unique_lock<std::shared_mutex> lock(lock_);
  return be().balance(exec(batch_work(1)), U, V);
}

template <class T>
int64_t CpuEngine<T>::normalize_units(T* U, T* V) {
  std::unique_lock<std::shared_mutex> lock(lock_);
  return be().normalize_units(exec(batch_work(1)), U, V);
}

template <class T>
void CpuEngine<T>::measures(const T* U, const T* V, double* const out[6]) const {
  std::shared_lock<std::shared_mutex> lock(lock_);
  be().measures(exec(batch_work(1)), U, V, out);
}

template <class T>
void CpuEngine<T>::unit_balance(const T* U, const T* V, double* out) const {
  std::shared_lock<std::shared_mutex> lock(lock_);
  be().unit_balance(exec(batch_work(1)), U, V, out);
}

template <class T>
void CpuEngine<T>::unit_stats(const T* U, const T* V, const T* U0, const T* V0, double p, double* out) const {
  if (!(p <= 0 || std::isfinite(p))) throw std::invalid_argument("p: expected a finite p > 0");
  std::shared_lock<std::shared_mutex> lock(lock_);
  be().unit_stats(exec(batch_work(1)), U, V, U0, V0, p, out);
}

template <class T>
void CpuEngine<T>::unit_moments(const T* U, const T* X, int64_t B, int64_t block, double* z2, double* a2) const {
  check_batch(B);
  if (block < 1) throw std::invalid_argument("batch_size: expected a positive integer, got " + str(block));
  const int64_t blk = std::min(B, block);
  check_fits(be().scratch_bytes(*plan_, plan_, Op::unit_moments, B, block),
             "the scratch of unit_moments for blocks of " + str(blk));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().unit_moments(exec(batch_work(B), &*ws), U, X, B, block, z2, a2);
}

template <class T>
void CpuEngine<T>::ddp_scale(const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU, T* kV) const {
  check_batch(B);
  for (int64_t n = 0; n < plan_->N; ++n)
    if (!(alpha[n] >= 0 && alpha[n] <= 1))
      throw std::invalid_argument("alpha: expected values in [0, 1], got " + std::to_string(alpha[n]) +
                                  " for network " + str(n));
  check_fits(pass_bytes(B, false), "the DDP scaling scratch for a batch of " + str(B));
  std::shared_lock<std::shared_mutex> lock(lock_);
  auto ws = pool_.take();
  be().ddp_scale(exec(batch_work(B), &*ws), U, V, X, B, alpha, kU, kV);
}

template class CpuEngine<float>;
template class CpuEngine<double>;

}  // namespace pyireg
