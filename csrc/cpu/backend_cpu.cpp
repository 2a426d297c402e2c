// The CPU backend: engine/backend.h's table for Device::cpu. Each entry turns the call's Exec into
// the CPU kernels' context (its Plan, the OpenMP team size, its Workspace) and calls the kernel
// table of the SIMD target chosen at run time (dispatch.cpp), so the ISA choice stays inside the
// CPU backend. The row operations are cpu/rescale.h's and cpu/measures.h's. Registered as
// Device::cpu when the library loads.
#include <algorithm>
#include <memory>

#include "cpu/cpu.h"
#include "cpu/measures.h"
#include "cpu/plan.h"
#include "cpu/rescale.h"
#include "engine/sizes.h"

namespace pyireg {
namespace {

const Plan& plan_of(const Exec& e) { return *static_cast<const Plan*>(e.plan); }
Ctx ctx_of(const Exec& e) { return Ctx{&plan_of(e), e.act, e.threads, 0, prefetch_ahead()}; }
template <class T>
Workspace<T>& ws_of(const Exec& e) {
  return *static_cast<Workspace<T>*>(e.scratch);
}

std::shared_ptr<const void> cpu_make_plan(const Layout& layout, const PlanOptions& o) {
  return std::make_shared<const Plan>(make_plan(layout, o.chunk_units, o.group_units));
}

// Scratch of the CPU kernels (the buffers of cpu/workspace.h as kernels.h grows them).
template <class T>
int64_t forward_scratch(const Plan& p, int64_t B) {
  const int64_t Bp = round_up(B, simd_width<T>());
  const char* w = "forward scratch";
  int64_t e = checked_mul(p.d, xt_stride<T>(Bp), w);
  e = checked_add(e, checked_mul3(std::max<int64_t>(1, p.nslots), p.k, Bp, w), w);
  e = checked_add(e, checked_mul3(p.N, p.k, Bp, w), w);
  e = checked_add(e, checked_mul3(num_threads(), p.chunk_units, Bp, w), w);
  return checked_mul(e, sizeof(T), w);
}

template <class T>
int64_t pass_scratch(const Plan& p, int64_t B, bool input_grad) {
  const int64_t Bp = round_up(B, simd_width<T>()), dp = round_up(p.d, simd_width<T>());
  const char* w = "training scratch";
  int64_t e = checked_mul(p.d, xt_stride<T>(Bp), w);  // XT
  e = checked_add(e, checked_mul(B, dp, w), w);       // Xp
  // AT: one group's activations, one buffer per thread when the pass runs by groups (a call
  // runs on one thread, never by groups, or on num_threads())
  const int64_t at_buffers = p.by_groups(num_threads()) ? num_threads() : 1;
  e = checked_add(e, checked_mul3(at_buffers, p.max_group_units, Bp, w), w);
  e = checked_add(e, checked_mul3(std::max<int64_t>(1, p.nslots), p.k, Bp, w), w);
  e = checked_add(e, checked_mul3(p.N, p.k, Bp, w), w);  // outs
  const int64_t cu = p.chunk_units;
  const int64_t per_thread =
      checked_add(checked_add(checked_mul(cu, Bp, w), checked_mul(cu, dp, w), w), cu * (p.k + 2 * kMaxRuleCoefs), w);
  e = checked_add(e, checked_mul(num_threads(), per_thread, w), w);
  if (input_grad) {
    e = checked_add(e, checked_mul(p.max_group_units, Bp, w), w);  // dZ
  }
  e = checked_mul(e, sizeof(T), w);
  if (input_grad) e = checked_add(e, checked_mul3(p.d, Bp, sizeof(double), w), w);  // dXT, in double
  return e;
}

template <class T>
int64_t moments_scratch(const Plan& p, int64_t B, int64_t block) {
  const int64_t blk = std::min(B, block), Bp = round_up(blk, simd_width<T>());
  const char* w = "moments scratch";
  const int64_t e =
      checked_add(checked_mul(p.d, xt_stride<T>(Bp), w), checked_mul3(num_threads(), p.chunk_units, Bp, w), w);
  return checked_mul(e, sizeof(T), w);
}

template <class T>
int64_t cpu_scratch_bytes(const Layout&, const void* plan, Op op, int64_t B, int64_t block) {
  const Plan& p = *static_cast<const Plan*>(plan);
  switch (op) {
    case Op::forward: return forward_scratch<T>(p, B);
    case Op::evaluate: return forward_scratch<T>(p, std::min(B, block));
    case Op::unit_moments: return moments_scratch<T>(p, B, block);
    case Op::backward_input_grad: return pass_scratch<T>(p, B, true);
    case Op::backward:
    case Op::loss_and_grad:
    case Op::step:
    case Op::ddp_scale: return pass_scratch<T>(p, B, false);
  }
  return 0;
}

template <class T>
void cpu_forward(const Exec& e, const T* U, const T* V, const T* X, int64_t B, T* out, T* act) {
  active_kernels<T>().forward(ws_of<T>(e), ctx_of(e), U, V, X, B, out, act);
}
template <class T>
void cpu_backward(const Exec& e, const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU, T* gV, T* gX,
                  const T* act) {
  active_kernels<T>().backward(ws_of<T>(e), ctx_of(e), U, V, X, B, dOut, gU, gV, gX, act);
}
template <class T>
void cpu_loss_and_grad(const Exec& e, const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, double* loss,
                       T* gU, T* gV) {
  active_kernels<T>().loss_and_grad(ws_of<T>(e), ctx_of(e), U, V, X, B, t, loss, gU, gV);
}
template <class T>
void cpu_step(const Exec& e, T* U, T* V, const T* X, int64_t B, const Targets<T>& t, const UpdateRule<T>& r,
              double* loss) {
  active_kernels<T>().step(ws_of<T>(e), ctx_of(e), U, V, X, B, t, r, loss);
}
template <class T>
void cpu_apply_update(const Exec& e, T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r) {
  active_kernels<T>().apply_update(ctx_of(e), U, V, gU, gV, r);
}
template <class T>
void cpu_evaluate(const Exec& e, const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, int64_t block,
                  double* loss, int64_t* errors) {
  active_kernels<T>().evaluate(ws_of<T>(e), ctx_of(e), U, V, X, B, t, block, loss, errors);
}
template <class T>
void cpu_unit_moments(const Exec& e, const T* U, const T* X, int64_t B, int64_t block, double* z2, double* a2) {
  active_kernels<T>().unit_moments(ws_of<T>(e), ctx_of(e), U, X, B, block, z2, a2);
}
template <class T>
void cpu_ddp_scale(const Exec& e, const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU, T* kV) {
  active_kernels<T>().ddp_scale(ws_of<T>(e), ctx_of(e), U, V, X, B, alpha, kU, kV);
}

template <class T>
int64_t cpu_balance(const Exec& e, T* U, T* V) {
  const Layout& l = *e.layout;
  return balance(U, V, l.S, l.d, l.k, e.threads);
}
template <class T>
int64_t cpu_normalize_units(const Exec& e, T* U, T* V) {
  const Layout& l = *e.layout;
  return normalize_units(U, V, l.S, l.d, l.k, e.threads);
}
template <class T>
void cpu_measures(const Exec& e, const T* U, const T* V, double* const out[6]) {
  const Layout& l = *e.layout;
  measures(U, V, l.offsets.data(), l.N, l.d, l.k, out[0], out[1], out[2], out[3], out[4], out[5], e.threads);
}
template <class T>
void cpu_unit_balance(const Exec& e, const T* U, const T* V, double* out) {
  const Layout& l = *e.layout;
  unit_balance(U, V, l.S, l.d, l.k, out, e.threads);
}
template <class T>
void cpu_unit_stats(const Exec& e, const T* U, const T* V, const T* U0, const T* V0, double p, double* out) {
  const Layout& l = *e.layout;
  unit_stats(U, V, U0, V0, l.S, l.d, l.k, p, out, e.threads);
}

template <class T>
Backend<T> make_cpu_backend() {
  Backend<T> b;
  b.device = Device::cpu;
  b.name = "cpu";
  b.make_plan = &cpu_make_plan;
  b.scratch_bytes = &cpu_scratch_bytes<T>;
  b.forward = &cpu_forward<T>;
  b.backward = &cpu_backward<T>;
  b.loss_and_grad = &cpu_loss_and_grad<T>;
  b.step = &cpu_step<T>;
  b.apply_update = &cpu_apply_update<T>;
  b.evaluate = &cpu_evaluate<T>;
  b.unit_moments = &cpu_unit_moments<T>;
  b.ddp_scale = &cpu_ddp_scale<T>;
  b.balance = &cpu_balance<T>;
  b.normalize_units = &cpu_normalize_units<T>;
  b.measures = &cpu_measures<T>;
  b.unit_balance = &cpu_unit_balance<T>;
  b.unit_stats = &cpu_unit_stats<T>;
  return b;
}

}  // namespace

template <class T>
const Backend<T>& cpu_backend() {
  static const Backend<T> table = make_cpu_backend<T>();
  return table;
}
template const Backend<float>& cpu_backend<float>();
template const Backend<double>& cpu_backend<double>();

namespace {
const BackendRegistrar register_cpu(cpu_backend<float>(), cpu_backend<double>());
}  // namespace

}  // namespace pyireg
