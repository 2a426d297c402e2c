// CudaEngine<T>: the engine's operations on a CUDA device (or on the emulated one), beside the
// CPU's engine, on the same device-neutral types (engine/types.h: Activation, Loss, Targets,
// UpdateRule; engine/layout.h: the layout and its validation; engine/rule_coefs.h: the rules'
// formulas, shared with the CPU kernels). Every pointer is a device pointer; the stream is a cudaStream_t passed as
// void* (this header needs no CUDA headers). Each operation takes a caller-provided workspace of
// at least workspace_bytes(op, B) bytes; no operation allocates or synchronizes with the host,
// so a step can be captured in a CUDA graph. The engine owns only its layout on the device (the
// offsets and the unit -> network map, copied once at construction) and a cuBLAS handle.
//
// Threads: operations may be called from several threads at once, each on its own stream. The
// one cuBLAS handle is bound to a stream per GEMM (cublasSetStream, then the GEMM), under a mutex,
// so a GEMM is never enqueued on another thread's stream. What runs on different streams is not
// ordered on the device: two threads writing the same weights must order their streams, as for
// any CUDA work.
//
// Loss outputs (loss, errors) are device arrays of N doubles / int64s, like the CPU engine's.
// Errors: std::invalid_argument for bad arguments; std::runtime_error naming the kernel or the
// cuBLAS call that failed (a launch error, a cuBLAS status).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/layout.h"
#include "engine/types.h"

namespace pyireg {

enum class CudaOp : int {
  forward = 0,
  backward = 1,
  loss_and_grad = 2,
  step = 3,
  evaluate = 4,
  apply_update = 5,
  rescale = 6,  // balance, normalize_units
  unit_moments = 7,
  ddp_scale = 8
};

template <class T>
class CudaEngine {
 public:
  // offsets: host array (N + 1), strictly increasing from 0. tf32: let the GEMMs use TF32
  // tensor cores (float only; fp32 is the default).
  CudaEngine(const int64_t* offsets, int64_t N, int64_t d, int64_t k, Activation act, Loss loss, bool tf32 = false);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  int64_t N() const { return N_; }
  int64_t S() const { return S_; }
  int64_t d() const { return d_; }
  int64_t k() const { return k_; }

  // Scratch bytes of an operation on a batch of B samples (evaluate: in blocks of `block`;
  // backward: with the input gradient or not).
  size_t workspace_bytes(CudaOp op, int64_t B, int64_t block = 0) const;

  void forward(const T* U, const T* V, const T* X, int64_t B, T* out, void* ws, size_t ws_bytes, void* stream) const;
  void backward(const T* U, const T* V, const T* X, int64_t B, const T* dOut, T* gU, T* gV, T* gX, void* ws,
                size_t ws_bytes, void* stream) const;
  void loss_and_grad(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, double* loss, T* gU, T* gV,
                     void* ws, size_t ws_bytes, void* stream) const;
  void step(T* U, T* V, const T* X, int64_t B, const Targets<T>& t, const UpdateRule<T>& r, double* loss, void* ws,
            size_t ws_bytes, void* stream) const;
  void apply_update(T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r, void* ws, size_t ws_bytes,
                    void* stream) const;
  void evaluate(const T* U, const T* V, const T* X, int64_t B, const Targets<T>& t, int64_t block, double* loss,
                int64_t* errors, void* ws, size_t ws_bytes, void* stream) const;

  // Theorem 1's rescalings (the CPU's rescale.h): balance makes ||u_h|| = ||v_h||, normalize_units
  // ||u_h|| = 1; zero_units (device, one int64) receives the number of zero units.
  void balance(T* U, T* V, int64_t* zero_units, void* ws, size_t ws_bytes, void* stream) const;
  void normalize_units(T* U, T* V, int64_t* zero_units, void* ws, size_t ws_bytes, void* stream) const;
  // out (device, 6 x N doubles): l2_penalty, group_l1, path_l1, path_l2, norm_U, norm_V.
  void measures(const T* U, const T* V, double* out, void* stream) const;

  // Per unit (device arrays of S doubles), over the B samples of X in blocks: z2[h] = sum_b z_hb^2,
  // a2[h] = sum_b act(z_hb)^2, z = U X^T (U: any array of the model's shape).
  void unit_moments(const T* U, const T* X, int64_t B, int64_t block, double* z2, double* a2, void* ws, size_t ws_bytes,
                    void* stream) const;
  // The DDP-SGD scaling 1 / kappa of every weight (kU: S x d, kV: S x k) from the batch X and the
  // per-network alpha (N), engine/rule_coefs.h's kappa (the CPU's ddp_scale).
  void ddp_scale(const T* U, const T* V, const T* X, int64_t B, const T* alpha, T* kU, T* kV, void* ws, size_t ws_bytes,
                 void* stream) const;

  // Testing only: plant a known bug so the tests can prove the net catches it.
  // 1: the first GEMM gets a leading dimension one short (cuBLAS must return INVALID_VALUE).
  void plant_bug(int which) { bug_ = which; }

 private:
  void check_batch(int64_t B) const;
  void check_ws(CudaOp op, int64_t B, int64_t block, size_t ws_bytes) const;
  void gemm_Z(const T* U, const T* X, int64_t B, T* Z, void* stream) const;
  void gemm(int opa, int opb, int64_t m, int64_t n, int64_t kk, const T* A, int64_t lda, const T* Bm, int64_t ldb, T* C,
            int64_t ldc, void* stream, const char* what) const;
  void second(const T* Z, const T* V, int64_t B, T* out, void* stream) const;
  void losses(T* out, int64_t B, const Targets<T>& t, T scale, double* lossb, int32_t* wrong, void* stream) const;
  void gradients(const T* V, int64_t B, const T* G, T* Z, T* gV, void* stream) const;
  void rescale(T* U, T* V, int mode, int64_t* zero_units, void* ws, size_t ws_bytes, void* stream) const;
  void rule_update(T* U, T* V, const T* gU, const T* gV, const UpdateRule<T>& r, T* qU, T* qV, void* stream) const;

  int64_t N_, S_, d_, k_;
  Activation act_;
  Loss loss_;
  bool tf32_;
  int bug_ = 0;
  int64_t* offsets_dev_ = nullptr;   // N + 1
  int32_t* unit_net_dev_ = nullptr;  // S
  void* blas_ = nullptr;             // the cuBLAS handle
  mutable std::mutex blas_mu_;       // held from binding the handle to a stream to the GEMM's launch
};

extern template class CudaEngine<float>;
extern template class CudaEngine<double>;

}  // namespace pyireg
