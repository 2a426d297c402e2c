// The engine's operations on the CPU (forward, backward, loss_and_grad, step, apply_update,
// evaluate) for one SIMD target: the includer defines PYIREG_ISA, the namespace they land in
// (kernels_generic.cpp: the baseline ISA; kernels_avx2.cpp: -mavx2 -mfma; kernels_avx512.cpp:
// -mavx512f -mavx512vl -mfma with 64-byte vectors, PYIREG_VEC_BYTES).
//
// Scratch layouts (Bp = batch rounded up to W = simd_width, 32 bytes on every target, dp = d
// rounded up to W):
//   XT    d x Bp    the batch transposed, zero padded: B operand of the first-layer GEMM
//   Xp    B x dp    the batch, zero padded:            B operand of the dU GEMM
//   AT    G x Bp    act(U X^T) of one group's G units, unit-major: kept from forward to backward
//   outs  N x k x Bp per network, class-major: outputs, then overwritten by d(loss)/d(outputs)
//   dZ    G x Bp    d(loss)/d(pre-activations) of a group, kept only for the input gradient
//   dXT   d x Bp    the input gradient, transposed, summed over every unit
// A training pass runs group by group: forward of the group's chunks into AT, the loss of its
// networks (or the given upstream gradient), then the backward of each chunk (dV, dZ with the
// activation mask, the dU GEMM into per-thread scratch) followed either by storing the gradients
// or by the update rule over the chunk's rows of U and V.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/gemm.h"
#include "cpu/layers.h"
#include "cpu/losses.h"
#include "cpu/rules.h"
#include "cpu/simd.h"
#include "cpu/cpu.h"

namespace pyireg {
namespace PYIREG_ISA {
namespace {

// Forward of chunks [c0, c1): act(U X^T) into AT (row h at AT + (h - at_unit0) * Bp), or into
// per-thread scratch when AT is null; with `outs`, each run's partial outputs go into its slot
// or straight into its network's outputs.
template <class T>
void forward_chunks(const Ctx& cx, const T* U, const T* V, const T* XT, int64_t Bp, T* AT, int64_t at_unit0, T* slots,
                    T* outs, T* scratch, int64_t scratch_stride, int64_t c0, int64_t c1) {
  const Plan& p = *cx.plan;
  const int64_t d = p.d, k = p.k;
  const bool use_relu = cx.act == Activation::relu;
  // dynamic: chunks differ in size, and which thread runs a chunk never changes its result
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
    T* at = AT ? AT + (h0 - at_unit0) * Bp : scratch + (cx.slot + thread_id()) * scratch_stride;
    // the next chunk's rows of U, fetched while this chunk's product runs (where prefetch_ahead())
    Ahead ahead;
    Ahead* pa = nullptr;
    if (cx.ahead && c + 1 < c1) {
      ahead.next = reinterpret_cast<const char*>(U + h1 * d);
      ahead.end = reinterpret_cast<const char*>(U + p.chunk_begin[c + 2] * d);
      pa = &ahead;
    }
    if (use_relu)
      gemm<T, false, true>(h1 - h0, Bp, d, U + h0 * d, d, XT, xt_stride<T>(Bp), StoreEpilogue<T, true>{at, Bp}, pa);
    else
      gemm<T, false, true>(h1 - h0, Bp, d, U + h0 * d, d, XT, xt_stride<T>(Bp), StoreEpilogue<T, false>{at, Bp}, pa);
    if (!outs) continue;
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      T* L = run.slot >= 0 ? slots + run.slot * k * Bp : outs + run.net * k * Bp;
      second_layer(at + (run.begin - h0) * Bp, run.end - run.begin, V + run.begin * k, k, Bp, L);
    }
  }
}

// Sum the partial outputs of network n (in unit order: independent of the thread count).
template <class T>
void reduce_outputs(const Plan& p, int64_t n, int64_t Bp, const T* slots, T* L) {
  const int64_t r0 = p.net_run_ptr[n], r1 = p.net_run_ptr[n + 1];
  const int64_t len = p.k * Bp;
  if (p.runs[p.net_runs[r0]].slot < 0) return;  // a single run wrote L directly
  std::memcpy(L, slots + p.runs[p.net_runs[r0]].slot * len, sizeof(T) * len);
  for (int64_t i = r0 + 1; i < r1; ++i) {
    const T* s = slots + p.runs[p.net_runs[i]].slot * len;
    for (int64_t e = 0; e < len; ++e) L[e] += s[e];
  }
}

// Sizes of one training pass.
struct Pass {
  int64_t B, Bp, dp;
};

// Forward + loss + d(loss)/d(outputs) of group g; its activations stay in AT for the backward.
template <class T>
void forward_loss_group(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const Targets<T>& t, const Pass& ps,
                        int64_t g, double* loss, T* AT) {
  const Plan& p = *cx.plan;
  const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
  forward_chunks(cx, U, V, ws.XT.data(), ps.Bp, AT, p.chunk_begin[c0], ws.slots.data(), ws.outs.data(),
                 static_cast<T*>(nullptr), 0, c0, c1);
  const T scale = T(1) / static_cast<T>(ps.B);
  T* outs = ws.outs.data();
  const T* slots = ws.slots.data();
#pragma omp parallel for schedule(static) num_threads(cx.threads)
  for (int64_t n = p.group_net_ptr[g]; n < p.group_net_ptr[g + 1]; ++n) {
    T* L = outs + n * p.k * ps.Bp;
    reduce_outputs(p, n, ps.Bp, slots, L);
    double s = 0;
    apply_loss(t, 0, p.k, ps.B, ps.Bp, L, scale, &s, static_cast<int64_t*>(nullptr));
    if (loss) loss[n] = s / static_cast<double>(ps.B);
  }
}

// What the backward of a chunk does with its gradients.
template <class T>
struct GradSink {
  T* gU;  // S x d, or null
  T* gV;  // S x k, or null
};

// Backward of the chunks of group g from the output gradients in ws.outs and the activations AT
// (row h of unit h at AT + h * Bp: the group's in ws.AT, or all of them kept by forward). With a rule, it is
// applied to the chunk's rows of U (from the chunk's dU) and of V once their gradients are in scratch;
// without one, the gradients are stored in `sink`. When dZ_group is set, dZ of every unit of
// the group is kept there (for the input gradient).
template <class T, class R>
void backward_group(Workspace<T>& ws, const Ctx& cx, T* U, T* V, const Pass& ps, int64_t g, const R* rule,
                    GradSink<T> sink, bool need_dU, T* dZ_group, const T* AT) {
  const Plan& p = *cx.plan;
  const int64_t cu = p.chunk_units, k = p.k, d = p.d, Bp = ps.Bp, dp = ps.dp;
  const int64_t stride = backward_thread_scratch(p, Bp, dp);
  const bool use_relu = cx.act == Activation::relu;
  const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
  const int64_t unit0 = p.chunk_begin[c0];
  const T* G = ws.outs.data();
  const T* Xp = ws.Xp.data();
  T* scratch = ws.thread_scratch.data();
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
  for (int64_t c = c0; c < c1; ++c) {
    T* own = scratch + (cx.slot + thread_id()) * stride;
    const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
    T* dZT = dZ_group ? dZ_group + (h0 - unit0) * Bp : own;
    T* dU = own + cu * Bp;
    T* dV = dU + cu * dp;
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      const T* Gn = G + run.net * k * Bp;
      // a few units at a time, the rule's rows of U and its state for them prefetched after each
      for (int64_t h = run.begin; h < run.end; h += kBackwardUnits) {
        const int64_t n = std::min(kBackwardUnits, run.end - h);
        units_backward(AT + h * Bp, Gn, V + h * k, n, k, Bp, dZT + (h - h0) * Bp, dV + (h - h0) * k, use_relu);
        if constexpr (!std::is_same<R, void>::value)
          for (int64_t i = h; i < h + n; ++i) prefetch_row(*rule, run.net, i, d, U);
      }
    }
    // the chunk's dU into the thread's scratch (it stays in L2), columns outer (a panel of the
    // batch stays in L1); a rule then runs over the rows in a pass of its own: on an AVX-512 Xeon
    // the rule inside the product's epilogue took 103-105 ms of the dense step against 88-94 ms
    // this way, and 172-175 against 120 with the AVX2 kernels (one thread, kernel sandbox), the
    // streams of U and its state stalling the tiles
    if (need_dU) gemm<T, false, true>(h1 - h0, dp, ps.B, dZT, Bp, Xp, dp, StoreEpilogue<T, false>{dU, dp});
    if constexpr (!std::is_same<R, void>::value) {
      // training: coefficients from the weights before the step, then U's rows, then V's rows
      constexpr int C = R::kCoefs;
      static_assert(C <= kMaxRuleCoefs, "rule has too many coefficients");
      T* coefU = dV + cu * k;
      T* coefV = coefU + kMaxRuleCoefs * cu;
      for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
        const Run& run = p.runs[r];
        for (int64_t h = run.begin; h < run.end; ++h)
          rule->prepare(run.net, U + h * d, V + h * k, d, k, coefU + (h - h0) * C, coefV + (h - h0) * C);
      }
      for (int64_t h = h0; h < h1; ++h)
        apply_row(*rule, false, h, d, U + h * d, dU + (h - h0) * dp, coefU + (h - h0) * C);
      for (int64_t h = h0; h < h1; ++h)
        apply_row(*rule, true, h, k, V + h * k, dV + (h - h0) * k, coefV + (h - h0) * C);
    } else {
      (void)rule;
      if (need_dU)
        for (int64_t h = h0; h < h1; ++h) std::memcpy(sink.gU + h * d, dU + (h - h0) * dp, sizeof(T) * d);
      if (sink.gV)
        for (int64_t h = h0; h < h1; ++h) std::memcpy(sink.gV + h * k, dV + (h - h0) * k, sizeof(T) * k);
    }
  }
}

// dXT (d x Bp, double) += U[group]^T dZ[group]: the input gradient of group g's units, chunk by
// chunk (each chunk's sum in registers, the chunks added in double, as accurate as a per-network
// product), parallel over blocks of input features; every element's sum runs over the chunks
// in order, so the result does not depend on the thread count.
template <class T>
void input_grad_group(const Ctx& cx, const T* U, const T* dZ_group, const Pass& ps, int64_t g, double* dXT) {
  const Plan& p = *cx.plan;
  const int64_t d = p.d;
  const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
  const int64_t unit0 = p.chunk_begin[c0];
  constexpr int64_t rows = 6;
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
  for (int64_t i0 = 0; i0 < d; i0 += rows)
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
      gemm<T, true>(std::min(rows, d - i0), ps.Bp, h1 - h0, U + h0 * d + i0, d, dZ_group + (h0 - unit0) * ps.Bp, ps.Bp,
                    AddDoubleEpilogue<T>{dXT + i0 * ps.Bp, ps.Bp});
    }
}

// The activations of group g in AT (one group's buffer), indexed by global unit (row h at the
// result + h * Bp).
template <class T>
const T* group_activations(const T* AT, const Plan& p, const Pass& ps, int64_t g) {
  return AT - p.chunk_begin[p.group_chunk_ptr[g]] * ps.Bp;
}

// Scratch for a training pass (grown once, then reused); `at_buffers` group activation buffers.
template <class T>
void reserve_pass(Workspace<T>& ws, const Ctx& cx, const Pass& ps, bool input_grad, int at_buffers = 1) {
  const Plan& p = *cx.plan;
  ws.grow(ws.AT, static_cast<size_t>(at_buffers * p.max_group_units * ps.Bp));
  ws.grow(ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * ps.Bp));
  ws.grow(ws.outs, static_cast<size_t>(p.N * p.k * ps.Bp));
  ws.grow(ws.thread_scratch, static_cast<size_t>(cx.threads * backward_thread_scratch(p, ps.Bp, ps.dp)));
  if (input_grad) {
    ws.grow(ws.dZ, static_cast<size_t>(p.max_group_units * ps.Bp));
    ws.grow(ws.dXT, static_cast<size_t>(p.d * ps.Bp));
  }
}

template <class T>
Pass make_pass(const Plan& p, int64_t B) {
  constexpr int64_t W = simd_width<T>();  // the padding unit (32 bytes)
  return Pass{B, round_up(B, W), round_up(p.d, W)};
}

// body(ctx, AT, g) for every group g of the plan. On the phase schedule, in order, on the
// caller's context (every group on all its threads) and the one activation buffer; by groups
// (by_groups), each group on one thread of a team of cx.threads, largest first, with a context
// of its own (a team of one, this thread's scratch slot) and this thread's activation buffer
// (ws.AT holds one per thread, at_stride apart).
template <class T, class Body>
void each_group(Workspace<T>& ws, const Ctx& cx, bool by_groups, int64_t at_stride, Body body) {
  const Plan& p = *cx.plan;
  if (!by_groups) {
    for (int64_t g = 0; g < p.ngroups(); ++g) body(cx, ws.AT.data(), g);
    return;
  }
#pragma omp parallel num_threads(cx.threads)
  {
    Ctx own = cx;
    own.threads = 1;
    own.slot = cx.slot + thread_id();
    T* AT = ws.AT.data() + thread_id() * at_stride;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < p.ngroups(); ++i) body(own, AT, p.group_order[i]);
  }
}

// A training pass with the loss: every group's forward, loss and backward; then either the
// gradients in sink or the rule's update. By groups (Plan::by_groups), each thread takes whole
// groups, largest first, with an activation buffer and a backward scratch of its own: a group's
// rows of U, its activations and (prefetched) optimizer state stay in that core's cache from
// its forward to its update, and the threads never wait for each other inside the step. Either
// way every network gets the same operations in the same order: the same bits.
template <class T, class R>
void loss_pass(Workspace<T>& ws, const Ctx& cx, T* U, T* V, const T* X, int64_t B, const Targets<T>& t, const R* rule,
               double* loss, GradSink<T> sink) {
  const Plan& p = *cx.plan;
  const Pass ps = make_pass<T>(p, B);
  const bool need_dU = rule != nullptr || sink.gU != nullptr;
  const bool by_groups = p.by_groups(cx.threads);
  pack_batch(ws, X, B, p.d, ps.Bp, ps.dp, true);
  reserve_pass(ws, cx, ps, false, by_groups ? cx.threads : 1);
  each_group(ws, cx, by_groups, p.max_group_units * ps.Bp, [&](const Ctx& c, T* AT, int64_t g) {
    forward_loss_group(ws, c, U, V, t, ps, g, loss, AT);
    backward_group(ws, c, U, V, ps, g, rule, sink, need_dU, static_cast<T*>(nullptr), group_activations(AT, p, ps, g));
  });
}

// ---------------------------------------------------------------- rules
// Calls f with the rule object of r's kind (one case per rule in rules.h).
template <class T, class F>
void with_rule(const UpdateRule<T>& r, F&& f) {
  switch (r.rule) {
    case Rule::momentum_sgd: f(MomentumSgdRule<T>{r}); break;
    case Rule::path_sgd: f(PathSgdRule<T>{r}); break;
    case Rule::ddp_sgd: f(DdpSgdRule<T>{r}); break;
    case Rule::nesterov_sgd: f(NesterovSgdRule<T>{r}); break;
    case Rule::adam: f(AdamRule<T, false>{r}); break;
    case Rule::adamw: f(AdamRule<T, true>{r}); break;
  }
}

// ---------------------------------------------------------------- entry points
template <class T>
void forward(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const T* X, int64_t B, T* out, T* act) {
  const Plan& p = *cx.plan;
  constexpr int64_t W = simd_width<T>();  // the padding unit (32 bytes)
  const int64_t Bp = round_up(B, W);
  pack_batch(ws, X, B, p.d, Bp, 0, false);
  ws.grow(ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * Bp));
  ws.grow(ws.outs, static_cast<size_t>(p.N * p.k * Bp));
  const int64_t stride = p.chunk_units * Bp;
  if (!act) ws.grow(ws.thread_scratch, static_cast<size_t>(cx.threads * stride));
  forward_chunks(cx, U, V, ws.XT.data(), Bp, act, 0, ws.slots.data(), ws.outs.data(), ws.thread_scratch.data(), stride,
                 0, p.nchunks());
  T* outs = ws.outs.data();
  const T* slots = ws.slots.data();
#pragma omp parallel for schedule(static) num_threads(cx.threads)
  for (int64_t n = 0; n < p.N; ++n) {
    T* L = outs + n * p.k * Bp;
    reduce_outputs(p, n, Bp, slots, L);
    T* o = out + n * B * p.k;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < p.k; ++c) o[b * p.k + c] = L[c * Bp + b];
  }
}

template <class T>
void backward(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU,
              T* gV, T* gX, const T* act) {
  const Plan& p = *cx.plan;
  const int64_t d = p.d, k = p.k;
  const Pass ps = make_pass<T>(p, B);
  // without the input gradient (a sum over every network) the networks are independent, and
  // the pass runs by groups when they spread evenly, as a training pass does
  const bool by_groups = gX == nullptr && p.by_groups(cx.threads);
  pack_batch(ws, X, B, d, ps.Bp, ps.dp, gU != nullptr);
  reserve_pass(ws, cx, ps, gX != nullptr, by_groups ? cx.threads : 1);
  // the upstream gradient, class-major and zero padded, where the loss would have put it
  T* G = ws.outs.data();
#pragma omp parallel for schedule(static) num_threads(cx.threads)
  for (int64_t n = 0; n < p.N; ++n) {
    T* L = G + n * k * ps.Bp;
    const T* o = dOut + n * B * k;
    for (int64_t c = 0; c < k; ++c) {
      for (int64_t b = 0; b < B; ++b) L[c * ps.Bp + b] = o[b * k + c];
      for (int64_t b = B; b < ps.Bp; ++b) L[c * ps.Bp + b] = T(0);
    }
  }
  double* dXT = gX ? ws.dXT.data() : nullptr;
  if (dXT) std::fill(dXT, dXT + d * ps.Bp, 0.0);
  T* Uw = const_cast<T*>(U);  // read only: no rule is applied
  T* Vw = const_cast<T*>(V);
  // by groups only without dXT (by_groups is false with it): the input gradient's chunks are
  // summed group after group, in order
  each_group(ws, cx, by_groups, p.max_group_units * ps.Bp, [&](const Ctx& c, T* AT, int64_t g) {
    const int64_t c0 = p.group_chunk_ptr[g], c1 = p.group_chunk_ptr[g + 1];
    if (!act)
      forward_chunks(c, U, V, ws.XT.data(), ps.Bp, AT, p.chunk_begin[c0], static_cast<T*>(nullptr),
                     static_cast<T*>(nullptr), static_cast<T*>(nullptr), 0, c0, c1);
    backward_group(ws, c, Uw, Vw, ps, g, static_cast<const void*>(nullptr), GradSink<T>{gU, gV}, gU != nullptr,
                   dXT ? ws.dZ.data() : static_cast<T*>(nullptr), act ? act : group_activations(AT, p, ps, g));
    if (dXT) input_grad_group(c, U, ws.dZ.data(), ps, g, dXT);
  });
  if (gX)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < d; ++f) gX[b * d + f] = static_cast<T>(dXT[f * ps.Bp + b]);
}

template <class T>
void loss_and_grad(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t,
                   double* loss, T* gU, T* gV) {
  loss_pass(ws, cx, const_cast<T*>(U), const_cast<T*>(V), X, B, t, static_cast<const void*>(nullptr), loss,
            GradSink<T>{gU, gV});
}

template <class T>
void step(Workspace<T>& ws, const Ctx& cx, T* U, T* V, const T* X, int64_t B, const Targets<T>& t,
          const UpdateRule<T>& r, double* loss) {
  with_rule(r, [&](const auto& rule) { loss_pass(ws, cx, U, V, X, B, t, &rule, loss, GradSink<T>{nullptr, nullptr}); });
}

template <class T>
void apply_update(const Ctx& cx, T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r) {
  const Plan& p = *cx.plan;
  const int64_t d = p.d, k = p.k;
  with_rule(r, [&](const auto& rule) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
    for (int64_t n = 0; n < p.N; ++n) {
      T cu[kMaxRuleCoefs], cv[kMaxRuleCoefs];
      for (int64_t h = p.offsets[n]; h < p.offsets[n + 1]; ++h) {
        rule.prepare(n, U + h * d, V + h * k, d, k, cu, cv);
        apply_row(rule, false, h, d, U + h * d, gU + h * d, cu);
        apply_row(rule, true, h, k, V + h * k, gV + h * k, cv);
      }
    }
  });
}

template <class T>
void evaluate(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t,
              int64_t block, double* loss, int64_t* errors) {
  const Plan& p = *cx.plan;
  for (int64_t n = 0; n < p.N; ++n) {
    loss[n] = 0;
    errors[n] = 0;
  }
  constexpr int64_t W = simd_width<T>();  // the padding unit (32 bytes)
  const int64_t blk = std::max<int64_t>(1, block);
  const int64_t Bpmax = round_up(std::min(blk, B), W);
  ws.grow(ws.slots, static_cast<size_t>(std::max<int64_t>(1, p.nslots) * p.k * Bpmax));
  ws.grow(ws.outs, static_cast<size_t>(p.N * p.k * Bpmax));
  const int64_t stride = p.chunk_units * Bpmax;
  ws.grow(ws.thread_scratch, static_cast<size_t>(cx.threads * stride));
  for (int64_t b0 = 0; b0 < B; b0 += blk) {
    const int64_t nb = std::min(blk, B - b0);
    const int64_t Bp = round_up(nb, W);
    pack_batch(ws, X + b0 * p.d, nb, p.d, Bp, 0, false);
    forward_chunks(cx, U, V, ws.XT.data(), Bp, static_cast<T*>(nullptr), 0, ws.slots.data(), ws.outs.data(),
                   ws.thread_scratch.data(), stride, 0, p.nchunks());
    T* outs = ws.outs.data();
    const T* slots = ws.slots.data();
#pragma omp parallel for schedule(static) num_threads(cx.threads)
    for (int64_t n = 0; n < p.N; ++n) {
      T* L = outs + n * p.k * Bp;
      reduce_outputs(p, n, Bp, slots, L);
      apply_loss(t, b0, p.k, nb, Bp, L, T(0), loss + n, errors + n);
    }
  }
}

// ---------------------------------------------------------------- data statistics
// Pre-activations z = U[chunk c] X^T of chunk c's units into z (rows of Bp).
template <class T>
void chunk_preact(const Plan& p, const T* U, const T* XT, int64_t Bp, int64_t c, T* z) {
  const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
  gemm<T>(h1 - h0, Bp, p.d, U + h0 * p.d, p.d, XT, xt_stride<T>(Bp), StoreEpilogue<T, false>{z, Bp});
}

// Sums over the samples of one unit's pre-activations z (nb of them): z^2 and act(z)^2, in double.
// Vectorized in double lanes (4 samples a vector, two vectors of partial sums each), the lanes
// added in a fixed order at the end, so the sums do not depend on the thread; the relu is a
// select, not a branch (the sign of z is a coin flip at initialization).
template <class T>
inline vec32<double> load4d(const T* p) {
  if constexpr (std::is_same<T, double>::value) {
    return ld32(p);
  } else {
    typedef float f4 __attribute__((vector_size(16)));
    f4 f;
    std::memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, vec32<double>);
  }
}

template <class T>
inline void unit_sums(const T* z, int64_t nb, bool use_relu, double* s2, double* a2) {
  const vec32<double> zero{}, lo = use_relu ? zero : splat32(-std::numeric_limits<double>::infinity());
  vec32<double> s0{}, s1{}, a0{}, a1{};
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    const vec32<double> v0 = load4d(z + b), v1 = load4d(z + b + 4);
    const vec32<double> r0 = v0 > lo ? v0 : zero, r1 = v1 > lo ? v1 : zero;
    s0 += v0 * v0;
    s1 += v1 * v1;
    a0 += r0 * r0;
    a1 += r1 * r1;
  }
  double s = 0, a = 0;
  for (int l = 0; l < 4; ++l) {
    s += s0[l] + s1[l];
    a += a0[l] + a1[l];
  }
  for (; b < nb; ++b) {
    const double v = z[b];
    const double r = v > lo[0] ? v : 0.0;
    s += v * v;
    a += r * r;
  }
  *s2 = s;
  *a2 = a;
}

template <class T>
void unit_moments(Workspace<T>& ws, const Ctx& cx, const T* U, const T* X, int64_t B, int64_t block, double* z2,
                  double* a2) {
  const Plan& p = *cx.plan;
  constexpr int64_t W = simd_width<T>();  // the padding unit (32 bytes)
  std::fill(z2, z2 + p.S, 0.0);
  std::fill(a2, a2 + p.S, 0.0);
  const int64_t blk = std::max<int64_t>(1, block);
  const int64_t Bpmax = round_up(std::min(blk, B), W);
  const int64_t stride = p.chunk_units * Bpmax;
  ws.grow(ws.thread_scratch, static_cast<size_t>(cx.threads * stride));
  const bool use_relu = cx.act == Activation::relu;
  for (int64_t b0 = 0; b0 < B; b0 += blk) {
    const int64_t nb = std::min(blk, B - b0);
    const int64_t Bp = round_up(nb, W);
    pack_batch(ws, X + b0 * p.d, nb, p.d, Bp, 0, false);
    const T* XT = ws.XT.data();
    T* scratch = ws.thread_scratch.data();
    // each unit is summed by one thread, block after block: the sums do not depend on the
    // thread count
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
    for (int64_t c = 0; c < p.nchunks(); ++c) {
      T* z = scratch + thread_id() * stride;
      chunk_preact(p, U, XT, Bp, c, z);
      for (int64_t h = p.chunk_begin[c]; h < p.chunk_begin[c + 1]; ++h) {
        double s, a;
        unit_sums(z + (h - p.chunk_begin[c]) * Bp, nb, use_relu, &s, &a);
        z2[h] += s;
        a2[h] += a;
      }
    }
  }
}

// The DDP-SGD scaling, from the batch X (B samples) and the weights before the step. With
// a = alpha of unit h's network, M_i = mean_b x_bi^2, z = U X^T, and on the batch
// E z_h^2, E act(z_h)^2 and Q_hi = mean_b act'(z_hb) x_bi^2 (act' = 1{z > 0} for relu, 1 for
// linear):
//   kappa(U[h, i]) = ||v_h||^2 (a^2 + a (1 - a) M_i + (1 - a) Q_hi)
//   kappa(V[h, j]) = a^2 ||u_h||^2 + a (1 - a) E z_h^2 + (1 - a) E act(z_h)^2
// (src/pyireg/optim/ddp_sgd.py derives them; engine/rule_coefs.h's ddp_kappa_U/V), stored as
// kU = 1/kappa(U), kV = 1/kappa(V) with inverse_kappa's zero policy. The norms are sq_norm
// (rule_coefs.h), as Path-SGD's, so at a = 1 the scaling has
// exactly Path-SGD's bits. Q is one product of the activation mask with X*X, shaped like the
// dU product of the training step.
template <class T>
void ddp_scale(Workspace<T>& ws, const Ctx& cx, const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU,
               T* kV) {
  const Plan& p = *cx.plan;
  const int64_t d = p.d, k = p.k, cu = p.chunk_units;
  const Pass ps = make_pass<T>(p, B);
  const int64_t Bp = ps.Bp, dp = ps.dp;
  pack_batch(ws, X, B, d, Bp, dp, true);
  T* X2 = ws.Xp.data();  // the batch squared, the B operand of the mask product
  for (int64_t e = 0; e < B * dp; ++e) X2[e] = X2[e] * X2[e];
  ws.grow(ws.dXT, static_cast<size_t>(d));
  double* M = ws.dXT.data();
  for (int64_t i = 0; i < d; ++i) {
    double s = 0;
    for (int64_t b = 0; b < B; ++b) s += static_cast<double>(X[b * d + i]) * static_cast<double>(X[b * d + i]);
    M[i] = s / static_cast<double>(B);
  }
  const int64_t stride = cu * Bp + cu * dp;
  ws.grow(ws.thread_scratch, static_cast<size_t>(cx.threads * stride));
  T* scratch = ws.thread_scratch.data();
  const T* XT = ws.XT.data();
  const bool use_relu = cx.act == Activation::relu;
  const double inv_B = 1.0 / static_cast<double>(B);
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx.threads)
  for (int64_t c = 0; c < p.nchunks(); ++c) {
    const int64_t h0 = p.chunk_begin[c], h1 = p.chunk_begin[c + 1];
    T* z = scratch + thread_id() * stride;
    T* Q = z + cu * Bp;
    chunk_preact(p, U, XT, Bp, c, z);
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      const double a = static_cast<double>(alpha[run.net]);
      for (int64_t h = run.begin; h < run.end; ++h) {
        T* zr = z + (h - h0) * Bp;
        double s2, a2;
        unit_sums(zr, B, use_relu, &s2, &a2);
        const T kv = inverse_kappa<T>(ddp_kappa_V(a, sq_norm(U + h * d, d), s2 * inv_B, a2 * inv_B));
        for (int64_t j = 0; j < k; ++j) kV[h * k + j] = kv;
        // the row becomes its activation mask (the padding columns stay zero)
        for (int64_t b = 0; b < B; ++b) zr[b] = (!use_relu || zr[b] > 0) ? T(1) : T(0);
      }
    }
    gemm<T>(h1 - h0, dp, B, z, Bp, X2, dp, StoreEpilogue<T, false>{Q, dp});
    for (int64_t r = p.chunk_run_ptr[c]; r < p.chunk_run_ptr[c + 1]; ++r) {
      const Run& run = p.runs[r];
      const double a = static_cast<double>(alpha[run.net]);
      for (int64_t h = run.begin; h < run.end; ++h) {
        const double v2 = sq_norm(V + h * k, k);
        const T* q = Q + (h - h0) * dp;
        for (int64_t i = 0; i < d; ++i) kU[h * d + i] = inverse_kappa<T>(ddp_kappa_U(a, v2, M[i], q[i] * inv_B));
      }
    }
  }
}

}  // namespace

template <class T>
const Kernels<T>& kernels() {
  static const Kernels<T> table{&forward<T>,      &backward<T>, &loss_and_grad<T>, &step<T>,
                                &apply_update<T>, &evaluate<T>, &unit_moments<T>,  &ddp_scale<T>};
  return table;
}
template const Kernels<float>& kernels<float>();
template const Kernels<double>& kernels<double>();

}  // namespace PYIREG_ISA
}  // namespace pyireg
