// Device-neutral types of the engine's operations: what a model computes (activation, loss), what
// a loss compares the outputs with (Targets), how a step updates the weights (Rule, UpdateRule),
// and where the arrays live (Device). Raw pointers and sizes only: the same structs describe a
// call on the CPU (host pointers) and on a GPU (device pointers). No CPU or CUDA facts here.
//
// Layouts: U is S x d and V is S x k, row h = hidden unit h (unit-major); network n owns rows
// offsets[n] .. offsets[n+1] (engine/layout.h). X is B x d. Outputs and upstream gradients are
// N x B x k.
#pragma once

#include <cstdint>

namespace pyireg {

enum class Activation : int { relu = 0, linear = 1 };
enum class Loss : int { cross_entropy = 0, squared = 1 };
enum class Rule : int { momentum_sgd = 0, path_sgd = 1, ddp_sgd = 2 };

// Where the arrays of a call live, and so which backend runs it (engine/backend.h).
enum class Device : int { cpu = 0, cuda = 1 };
constexpr int kDevices = 2;
const char* device_name(Device d);

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
// ddp_sgd reads its per-weight scaling from it (computed by the backend's ddp_scale) and has no
// momentum (the engine requires momentum = 0 for it). The coefficients a rule derives per row
// are in engine/rule_coefs.h.
template <class T>
struct UpdateRule {
  Rule rule = Rule::momentum_sgd;
  T* state_U = nullptr;
  T* state_V = nullptr;
  const T* lr = nullptr;
  const T* momentum = nullptr;
  const T* weight_decay = nullptr;
};

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace pyireg
