// Packed two-layer networks y = sum_h v_h act(<u_h, x>): the plan that splits the hidden units
// into fixed chunks and per-network runs, the reusable workspace, and the kernel entry points
// (one set per SIMD target, chosen at run time by dispatch.cpp). Raw pointers and sizes only.
#pragma once

#include <cstdint>
#include <vector>

namespace pyireg {

enum class Activation : int { relu = 0, linear = 1 };

// Hidden units [begin, end) of network `net`, all inside one chunk. `slot` is the index of the
// run's private logits buffer when its network spans several runs, or -1 when the run is the
// whole network and writes the network's logits directly.
struct Run {
  int64_t begin, end, net, slot;
};

// How the S hidden units are cut up: chunks of at most `chunk_units` consecutive units (the unit
// of parallel work), each a sequence of runs. The cut depends on neither the thread count nor a
// network's neighbours, so every network's result is bit-identical for any thread count and
// any packing.
struct Plan {
  int64_t N = 0, S = 0, d = 0, k = 0, chunk_units = 0;
  std::vector<int64_t> offsets;        // N + 1
  std::vector<int64_t> chunk_begin;    // nchunks + 1, first unit of each chunk
  std::vector<int64_t> chunk_run_ptr;  // nchunks + 1, into runs
  std::vector<Run> runs;
  std::vector<int64_t> net_run_ptr;    // N + 1, into net_runs
  std::vector<int64_t> net_runs;       // run ids of each network, in unit order
  int64_t nslots = 0;                  // runs with a private logits buffer
  // Groups of whole networks (consecutive chunks) of about group_units units: a training step
  // runs forward, loss and backward group by group, so a group's activations and weights are
  // still in cache when its backward and update need them, and the activation buffer holds
  // one group (max_group_units x batch) instead of every unit.
  std::vector<int64_t> group_chunk_ptr;  // ngroups + 1, into chunks
  std::vector<int64_t> group_net_ptr;    // ngroups + 1, into networks
  int64_t max_group_units = 0;
  int64_t nchunks() const { return static_cast<int64_t>(chunk_run_ptr.size()) - 1; }
};

Plan make_plan(const int64_t* offsets, int64_t N, int64_t d, int64_t k, int64_t chunk_units,
               int64_t group_units = 8192);

// Scratch memory, grown on demand and then reused: after the first step of a given batch size
// no kernel allocates.
template <class T>
struct Workspace {
  std::vector<T> XT, Xp, AT, slots, logits, thread_scratch;
  int64_t allocations = 0;  // how many times a buffer had to grow
  int64_t bytes() const {
    return static_cast<int64_t>(sizeof(T) * (XT.capacity() + Xp.capacity() + AT.capacity() + slots.capacity() +
                                             logits.capacity() + thread_scratch.capacity()));
  }
};

// Everything a kernel needs about one call. Pointers that an operation does not use may be null.
template <class T>
struct Call {
  const Plan* plan = nullptr;
  Activation act = Activation::relu;
  T* U = nullptr;  // S x d
  T* V = nullptr;  // S x k
  const T* X = nullptr;  // B x d
  const int32_t* y = nullptr;  // B
  int64_t B = 0;
  // gradients (loss_grad)
  T* gU = nullptr;
  T* gV = nullptr;
  // momentum SGD (sgd_step): buffers and per-network hyper-parameters
  T* bufU = nullptr;
  T* bufV = nullptr;
  const T* lr = nullptr;
  const T* momentum = nullptr;
  const T* weight_decay = nullptr;
  // outputs
  T* logits_out = nullptr;   // N x B x k (forward)
  double* loss = nullptr;    // N: mean loss (loss_grad, sgd_step) or summed loss (evaluate)
  int64_t* errors = nullptr; // N (evaluate)
  int64_t eval_block = 256;  // samples per block in evaluate
};

#define PYIREG_DECLARE_KERNELS(ns)                                          \
  namespace ns {                                                            \
  template <class T> void forward(Workspace<T>& ws, const Call<T>& c);      \
  template <class T> void loss_grad(Workspace<T>& ws, const Call<T>& c);    \
  template <class T> void sgd_step(Workspace<T>& ws, const Call<T>& c);     \
  template <class T> void evaluate(Workspace<T>& ws, const Call<T>& c);     \
  }

PYIREG_DECLARE_KERNELS(generic)
#if defined(PYIREG_HAVE_AVX2)
PYIREG_DECLARE_KERNELS(avx2)
#endif

// Dispatch (dispatch.cpp): the SIMD target in use, and the public entry points.
enum class Simd : int { generic = 0, avx2 = 1 };
Simd active_simd();
bool simd_available(Simd s);
void set_simd(Simd s);  // throws std::invalid_argument if s is not available
int max_threads();
void set_num_threads(int n);

template <class T> void forward(Workspace<T>& ws, const Call<T>& c);
template <class T> void loss_grad(Workspace<T>& ws, const Call<T>& c);
template <class T> void sgd_step(Workspace<T>& ws, const Call<T>& c);
template <class T> void evaluate(Workspace<T>& ws, const Call<T>& c);

}  // namespace pyireg
