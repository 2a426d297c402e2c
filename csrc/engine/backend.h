// The seam between the engine and the devices: a table of the engine's operations (Backend<T>)
// per device, looked up at every call by the device its arrays live on, in a registry that each
// backend fills when its library is loaded (DispatchStub's idea). The CPU backend
// (cpu/backend_cpu.cpp) registers itself; a CUDA backend registers from its own library, so
// nothing here includes a CUDA header, and a build without one simply has no entry for it.
//
// Every operation takes raw pointers (on the backend's device) and sizes, plus an Exec: the
// call's layout, the backend's plan of that layout, the activation, and the device's execution
// resources (host threads, a stream, scratch). Shapes: engine/types.h.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/layout.h"
#include "engine/types.h"

namespace pyireg {

// One call's context.
struct Exec {
  const Layout* layout = nullptr;
  const void* plan = nullptr;  // the backend's plan of *layout (Backend::make_plan)
  Activation act = Activation::relu;
  int threads = 1;          // host threads the call may use (the CPU's OpenMP team)
  void* stream = nullptr;   // the device stream (null on the CPU)
  void* scratch = nullptr;  // CPU: its workspace object; a device: a workspace of scratch_bytes
  int64_t scratch_bytes = 0;
};

// How a backend may cut the work (the CPU's chunks and groups); a backend may ignore them.
struct PlanOptions {
  int64_t chunk_units = 192;
  int64_t group_units = 512;
};

// The operations whose scratch a backend reports (Backend::scratch_bytes).
enum class Op : int {
  forward = 0,
  backward = 1,             // without the input gradient
  backward_input_grad = 2,  // with it
  loss_and_grad = 3,
  step = 4,
  evaluate = 5,      // in blocks of `block` samples
  unit_moments = 6,  // in blocks of `block` samples
  ddp_scale = 7,
};

template <class T>
struct Backend {
  Device device = Device::cpu;
  const char* name = "";

  // The backend's plan of a layout (validated by make_layout), and its bytes. Throws
  // std::invalid_argument for options out of range and MemoryLimitError before allocating
  // more than the memory limit.
  std::shared_ptr<const void> (*make_plan)(const Layout&, const PlanOptions&) = nullptr;
  // Scratch bytes of `op` on a batch of B samples (outputs not included); overflow-checked.
  int64_t (*scratch_bytes)(const Layout&, const void* plan, Op op, int64_t B, int64_t block) = nullptr;

  // out (N x B x k) = the networks' outputs on X; with act (S x activation columns, the
  // backend's padding of B), the hidden activations are kept there for a later backward.
  void (*forward)(const Exec&, const T* U, const T* V, const T* X, int64_t B, T* out, T* act) = nullptr;
  // Gradients of sum_n <dOut[n], out[n]> with respect to U, V and X (any of gU, gV, gX may be
  // null; gX is summed over networks). With act (from forward on the same weights and batch),
  // the first layer is not computed again.
  void (*backward)(const Exec&, const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU, T* gV, T* gX,
                   const T* act) = nullptr;
  // Per-network mean loss (N, double) and its gradients with respect to U and V.
  void (*loss_and_grad)(const Exec&, const T* U, const T* V, const T* X, int64_t B, const Targets<T>&, double* loss,
                        T* gU, T* gV) = nullptr;
  // One fused step of the rule on every network; loss (N) is the mean loss before the step.
  void (*step)(const Exec&, T* U, T* V, const T* X, int64_t B, const Targets<T>&, const UpdateRule<T>&,
               double* loss) = nullptr;
  // The rule applied to given gradients (the unfused oracle of step).
  void (*apply_update)(const Exec&, T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>&) = nullptr;
  // Summed loss (N) and wrong predictions (N) over B samples in blocks of `block`.
  void (*evaluate)(const Exec&, const T* U, const T* V, const T* X, int64_t B, const Targets<T>&, int64_t block,
                   double* loss, int64_t* errors) = nullptr;
  // Per unit h (S), summed over the samples of X in blocks, in double: z2[h] = sum_b z_hb^2 and
  // a2[h] = sum_b act(z_hb)^2, z = U X^T (any U of the model's shape).
  void (*unit_moments)(const Exec&, const T* U, const T* X, int64_t B, int64_t block, double* z2, double* a2) = nullptr;
  // The DDP-SGD scaling 1 / kappa of every weight (kU: S x d, kV: S x k) from the batch X, the
  // weights and the per-network alpha (N); rule_coefs.h gives kappa.
  void (*ddp_scale)(const Exec&, const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU, T* kV) = nullptr;

  // Row operations of Theorem 1 and the measures (one unit = row h of U and of V).
  // balance: ||u_h|| = ||v_h||; normalize_units: ||u_h|| = 1. Both return the zero units.
  int64_t (*balance)(const Exec&, T* U, T* V) = nullptr;
  int64_t (*normalize_units)(const Exec&, T* U, T* V) = nullptr;
  // out: 6 arrays of N (l2_penalty, group_l1, path_l1, path_l2, norm_U, norm_V), double.
  void (*measures)(const Exec&, const T* U, const T* V, double* const out[6]) = nullptr;
  // out (S): ||u_h||^2 - ||v_h||^2.
  void (*unit_balance)(const Exec&, const T* U, const T* V, double* out) = nullptr;
  // out (S x 10, cpu/measures.h's columns): per-unit weight statistics; U0, V0 may be null,
  // p <= 0 for none.
  void (*unit_stats)(const Exec&, const T* U, const T* V, const T* U0, const T* V0, double p, double* out) = nullptr;
};

// Put a backend's tables in the registry (the latest registration of a device wins).
void register_backend(const Backend<float>& f32, const Backend<double>& f64);
// The backend of device d; throws std::runtime_error naming the device if none is registered.
template <class T>
const Backend<T>& backend(Device d);
bool backend_registered(Device d);

// A backend registers itself with a static object of this type in its library.
struct BackendRegistrar {
  BackendRegistrar(const Backend<float>& f32, const Backend<double>& f64) { register_backend(f32, f64); }
};

}  // namespace pyireg
