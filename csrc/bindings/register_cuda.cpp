// Binding of the CUDA engine, shared by pyireg._cuda (nvcc, a real device) and pyireg._cuda_emu
// (the host compiler with the emulation). Arrays cross as raw device addresses (integers:
// torch's data_ptr(), or a numpy array's address on the emulated device) with their sizes
// checked on the Python side (pyireg/cuda.py, pyireg/torch/_kernels_cuda.py); the stream is
// torch's current stream as an integer. The emulated module also exposes the emulation's
// settings, its self-test kernels and the cuBLAS stand-in's argument checks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/check.h"
#include "cuda/blas.h"
#include "cuda/cuda_engine.h"
#include "cuda/selftest.h"
#if defined(PYIREG_CUDA_EMULATED)
#include "cuda/emu/emu.h"
#endif

namespace py = pybind11;
using namespace pyireg;

namespace {

template <class P>
P* ptr(uintptr_t a) {
  return reinterpret_cast<P*>(a);
}

Activation activation_from(const std::string& s) {
  if (s == "relu") return Activation::relu;
  if (s == "linear") return Activation::linear;
  throw py::value_error("activation: expected 'relu' or 'linear', got '" + s + "'");
}
Loss loss_from(const std::string& s) {
  if (s == "cross_entropy") return Loss::cross_entropy;
  if (s == "squared") return Loss::squared;
  throw py::value_error("loss: expected 'cross_entropy' or 'squared', got '" + s + "'");
}
Rule rule_from(const std::string& s) {
  if (s == "momentum_sgd") return Rule::momentum_sgd;
  if (s == "path_sgd") return Rule::path_sgd;
  if (s == "ddp_sgd") return Rule::ddp_sgd;
  if (s == "nesterov_sgd") return Rule::nesterov_sgd;
  throw py::value_error("rule: expected 'momentum_sgd', 'nesterov_sgd', 'path_sgd' or 'ddp_sgd', got '" + s + "'");
}
CudaOp op_from(const std::string& s) {
  if (s == "forward") return CudaOp::forward;
  if (s == "backward") return CudaOp::backward;
  if (s == "loss_and_grad") return CudaOp::loss_and_grad;
  if (s == "step") return CudaOp::step;
  if (s == "evaluate") return CudaOp::evaluate;
  if (s == "apply_update") return CudaOp::apply_update;
  if (s == "rescale") return CudaOp::rescale;
  if (s == "unit_moments") return CudaOp::unit_moments;
  if (s == "ddp_scale") return CudaOp::ddp_scale;
  throw py::value_error(
      "op: expected forward, backward, loss_and_grad, step, evaluate, apply_update, rescale, "
      "unit_moments or ddp_scale, got '" +
      s + "'");
}

// The workspace of one call: the caller's, or (emulated build, address 0) an exactly sized one
// from the device allocator, filled with NaN bytes, freed after the call.
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  bool owned = false;
  Scratch(uintptr_t given, size_t given_bytes, size_t need) : p(ptr<void>(given)), bytes(given_bytes) {
#if defined(PYIREG_CUDA_EMULATED)
    if (!given) {
      if (need && cudaMalloc(&p, need) != cudaSuccess) throw std::bad_alloc();
      bytes = need;
      owned = true;
    }
#else
    (void)need;
    if (!given && need)
      throw py::value_error("workspace: expected a device buffer of at least " + std::to_string(need) + " bytes");
#endif
  }
  ~Scratch() {
    if (owned) cudaFree(p);
  }
};

template <class T>
Targets<T> targets(Loss loss, uintptr_t labels, uintptr_t values, uintptr_t weights) {
  Targets<T> t;
  t.loss = loss;
  t.labels = ptr<const int32_t>(labels);
  t.values = ptr<const T>(values);
  t.weights = ptr<const T>(weights);
  if (loss == Loss::cross_entropy && !labels) throw py::value_error("labels: expected int32 labels for cross_entropy");
  if (loss == Loss::squared && !values) throw py::value_error("values: expected targets of shape (B, k) for squared");
  return t;
}

template <class T>
UpdateRule<T> rule_of(const std::string& rule, uintptr_t sU, uintptr_t sV, uintptr_t lr, uintptr_t mom, uintptr_t wd) {
  UpdateRule<T> r;
  r.rule = rule_from(rule);
  r.state_U = ptr<T>(sU);
  r.state_V = ptr<T>(sV);
  r.lr = ptr<const T>(lr);
  r.momentum = ptr<const T>(mom);
  r.weight_decay = ptr<const T>(wd);
  return r;
}

template <class T>
void bind_engine(py::module_& m, const char* name) {
  using E = CudaEngine<T>;
  // module_local: pyireg._cuda and pyireg._cuda_emu both bind CudaEngine<T> (two builds of one type)
  py::class_<E>(m, name, py::module_local(),
                "The CUDA engine of one packed model (raw device addresses; see pyireg.cuda).")
      .def(py::init([](const py::array& offsets, int64_t d, int64_t k, const std::string& act, const std::string& loss,
                       bool tf32) {
             const int64_t* off = pyireg_bind::checked<int64_t>(offsets, "offsets", {-1}, false);
             const int64_t n = static_cast<int64_t>(offsets.shape(0)) - 1;
             if (n < 1) throw py::value_error("offsets: expected at least 2 entries (one network)");
             try {
               return new E(off, n, d, k, activation_from(act), loss_from(loss), tf32);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("offsets"), py::arg("d"), py::arg("k"), py::arg("activation") = "relu",
           py::arg("loss") = "cross_entropy", py::arg("tf32") = false)
      .def_property_readonly("N", &E::N)
      .def_property_readonly("S", &E::S)
      .def_property_readonly("d", &E::d)
      .def_property_readonly("k", &E::k)
      .def(
          "workspace_bytes",
          [](const E& e, const std::string& op, int64_t B, int64_t block) {
            if (B < 1) throw py::value_error("B: expected a positive batch size");
            return e.workspace_bytes(op_from(op), B, block);
          },
          py::arg("op"), py::arg("B"), py::arg("block") = 0)
      .def("plant_bug", &E::plant_bug, py::arg("which"),
           "Testing only: 1 = a wrong leading dimension in the first GEMM.")
      .def(
          "forward",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, uintptr_t out, uintptr_t ws, size_t wsb,
             uintptr_t stream) {
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::forward, std::max<int64_t>(B, 1)));
            py::gil_scoped_release nogil;
            e.forward(ptr<const T>(U), ptr<const T>(V), ptr<const T>(X), B, ptr<T>(out), s.p, s.bytes,
                      ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("out"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "backward",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, uintptr_t dOut, uintptr_t gU, uintptr_t gV,
             uintptr_t gX, uintptr_t ws, size_t wsb, uintptr_t stream) {
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::backward, std::max<int64_t>(B, 1)));
            py::gil_scoped_release nogil;
            e.backward(ptr<const T>(U), ptr<const T>(V), ptr<const T>(X), B, ptr<const T>(dOut), ptr<T>(gU), ptr<T>(gV),
                       ptr<T>(gX), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("grad_out"), py::arg("gU"), py::arg("gV"),
          py::arg("gX"), py::arg("workspace") = 0, py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "loss_and_grad",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, const std::string& loss, uintptr_t labels,
             uintptr_t values, uintptr_t weights, uintptr_t lossp, uintptr_t gU, uintptr_t gV, uintptr_t ws, size_t wsb,
             uintptr_t stream) {
            const Targets<T> t = targets<T>(loss_from(loss), labels, values, weights);
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::loss_and_grad, std::max<int64_t>(B, 1)));
            py::gil_scoped_release nogil;
            e.loss_and_grad(ptr<const T>(U), ptr<const T>(V), ptr<const T>(X), B, t, ptr<double>(lossp), ptr<T>(gU),
                            ptr<T>(gV), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("loss"), py::arg("labels"), py::arg("values"),
          py::arg("weights"), py::arg("loss_out"), py::arg("gU"), py::arg("gV"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "step",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, const std::string& loss, uintptr_t labels,
             uintptr_t values, uintptr_t weights, const std::string& rule, uintptr_t sU, uintptr_t sV, uintptr_t lr,
             uintptr_t mom, uintptr_t wd, uintptr_t lossp, uintptr_t ws, size_t wsb, uintptr_t stream) {
            const Targets<T> t = targets<T>(loss_from(loss), labels, values, weights);
            const UpdateRule<T> r = rule_of<T>(rule, sU, sV, lr, mom, wd);
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::step, std::max<int64_t>(B, 1)));
            py::gil_scoped_release nogil;
            e.step(ptr<T>(U), ptr<T>(V), ptr<const T>(X), B, t, r, ptr<double>(lossp), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("loss"), py::arg("labels"), py::arg("values"),
          py::arg("weights"), py::arg("rule"), py::arg("state_U"), py::arg("state_V"), py::arg("lr"),
          py::arg("momentum"), py::arg("weight_decay"), py::arg("loss_out"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "apply_update",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t gU, uintptr_t gV, const std::string& rule, uintptr_t sU,
             uintptr_t sV, uintptr_t lr, uintptr_t mom, uintptr_t wd, uintptr_t ws, size_t wsb, uintptr_t stream) {
            const UpdateRule<T> r = rule_of<T>(rule, sU, sV, lr, mom, wd);
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::apply_update, 1));
            py::gil_scoped_release nogil;
            e.apply_update(ptr<T>(U), ptr<T>(V), ptr<const T>(gU), ptr<const T>(gV), r, s.p, s.bytes,
                           ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("gU"), py::arg("gV"), py::arg("rule"), py::arg("state_U"),
          py::arg("state_V"), py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "evaluate",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, const std::string& loss, uintptr_t labels,
             uintptr_t values, uintptr_t weights, int64_t block, uintptr_t lossp, uintptr_t errors, uintptr_t ws,
             size_t wsb, uintptr_t stream) {
            const Targets<T> t = targets<T>(loss_from(loss), labels, values, weights);
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::evaluate, std::max<int64_t>(B, 1), block));
            py::gil_scoped_release nogil;
            e.evaluate(ptr<const T>(U), ptr<const T>(V), ptr<const T>(X), B, t, block, ptr<double>(lossp),
                       ptr<int64_t>(errors), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("loss"), py::arg("labels"), py::arg("values"),
          py::arg("weights"), py::arg("block"), py::arg("loss_out"), py::arg("errors_out"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "rescale",
          [](const E& e, const std::string& how, uintptr_t U, uintptr_t V, uintptr_t zero, uintptr_t ws, size_t wsb,
             uintptr_t stream) {
            if (how != "balance" && how != "normalize_units")
              throw py::value_error("how: expected 'balance' or 'normalize_units', got '" + how + "'");
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::rescale, 1));
            py::gil_scoped_release nogil;
            if (how == "balance")
              e.balance(ptr<T>(U), ptr<T>(V), ptr<int64_t>(zero), s.p, s.bytes, ptr<void>(stream));
            else
              e.normalize_units(ptr<T>(U), ptr<T>(V), ptr<int64_t>(zero), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("how"), py::arg("U"), py::arg("V"), py::arg("zero_units"), py::arg("workspace") = 0,
          py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "measures",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t out, uintptr_t stream) {
            py::gil_scoped_release nogil;
            e.measures(ptr<const T>(U), ptr<const T>(V), ptr<double>(out), ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("out"), py::arg("stream") = 0)
      .def(
          "unit_moments",
          [](const E& e, uintptr_t U, uintptr_t X, int64_t B, int64_t block, uintptr_t z2, uintptr_t a2, uintptr_t ws,
             size_t wsb, uintptr_t stream) {
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::unit_moments, std::max<int64_t>(B, 1), block));
            py::gil_scoped_release nogil;
            e.unit_moments(ptr<const T>(U), ptr<const T>(X), B, block, ptr<double>(z2), ptr<double>(a2), s.p, s.bytes,
                           ptr<void>(stream));
          },
          py::arg("U"), py::arg("X"), py::arg("B"), py::arg("block"), py::arg("z2"), py::arg("a2"),
          py::arg("workspace") = 0, py::arg("workspace_bytes") = 0, py::arg("stream") = 0)
      .def(
          "ddp_scale",
          [](const E& e, uintptr_t U, uintptr_t V, uintptr_t X, int64_t B, uintptr_t alpha, uintptr_t kU, uintptr_t kV,
             uintptr_t ws, size_t wsb, uintptr_t stream) {
            Scratch s(ws, wsb, e.workspace_bytes(CudaOp::ddp_scale, std::max<int64_t>(B, 1)));
            py::gil_scoped_release nogil;
            e.ddp_scale(ptr<const T>(U), ptr<const T>(V), ptr<const T>(X), B, ptr<const T>(alpha), ptr<T>(kU),
                        ptr<T>(kV), s.p, s.bytes, ptr<void>(stream));
          },
          py::arg("U"), py::arg("V"), py::arg("X"), py::arg("B"), py::arg("alpha"), py::arg("kU"), py::arg("kV"),
          py::arg("workspace") = 0, py::arg("workspace_bytes") = 0, py::arg("stream") = 0);
}

}  // namespace

void register_cuda(py::module_& m) {
#if defined(PYIREG_CUDA_EMULATED)
  m.attr("emulated") = true;
  m.attr("archs") = py::list();
#else
  m.attr("emulated") = false;
  py::list archs;
  for (const char* a : {PYIREG_CUDA_ARCHS}) archs.append(a);
  m.attr("archs") = archs;
#endif
  m.def(
      "device_status",
      []() {
        int n = 0;
        const cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) n = 0;
        return py::make_tuple(static_cast<int>(e), std::string(cudaGetErrorString(e)), n);
      },
      "(error code of cudaGetDeviceCount, its message, devices): 35 = no driver, 100 = no device.");
  m.def("set_cublas_path", &blas::set_library_path, py::arg("path"),
        "Where to look for libcublas.so.13 first (before the loader path).");
  m.def(
      "cublas_loaded",
      []() {
        try {
          blas::api();
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      },
      "Loads cuBLAS if needed: '' when it is usable, else the reason.");
  bind_engine<float>(m, "Engine32");
  bind_engine<double>(m, "Engine64");
  m.def(
      "selftest",
      [](const std::string& name, const py::array& input, int threads, int blocks) {
        const float* p = pyireg_bind::checked<float>(input, "input", {-1}, false);
        std::vector<float> in(p, p + input.shape(0));
        std::vector<float> out;
        {
          py::gil_scoped_release nogil;
          out = run_selftest(name, in, threads, blocks);
        }
        return py::array_t<float>(static_cast<py::ssize_t>(out.size()), out.data());
      },
      py::arg("name"), py::arg("input"), py::arg("threads"), py::arg("blocks"),
      "Run one self-test kernel (cuda/selftest.cuh), some with planted bugs, and return its output.");
#if defined(PYIREG_CUDA_EMULATED)
  m.def(
      "set_schedule",
      [](const std::string& s, uint64_t seed) {
        emu::Schedule sch;
        if (s == "forward")
          sch = emu::Schedule::forward;
        else if (s == "reverse")
          sch = emu::Schedule::reverse;
        else if (s == "random")
          sch = emu::Schedule::random;
        else
          throw py::value_error("schedule: expected 'forward', 'reverse' or 'random', got '" + s + "'");
        emu::set_schedule(sch, seed);
      },
      py::arg("schedule"), py::arg("seed") = 0);
  m.def("get_schedule", []() {
    const char* names[] = {"forward", "reverse", "random"};
    return py::make_tuple(names[static_cast<int>(emu::schedule())], emu::schedule_seed());
  });
  m.def(
      "set_threads",
      [](int n) {
        try {
          emu::set_threads(n);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("n"), "CPU threads that run the emulated blocks.");
  m.def("get_threads", &emu::threads);
  m.def("launches", &emu::launches, "Kernels launched through the emulation since the process started.");
  m.def("live_allocations", &emu::live_allocations, "Emulated device allocations not yet freed.");
  m.def(
      "gemm_status",
      [](const std::string& ta, const std::string& tb, int mm, int n, int k, int lda, int ldb, int ldc) {
        if ((ta != "N" && ta != "T") || (tb != "N" && tb != "T"))
          throw py::value_error("transa, transb: expected 'N' or 'T'");
        const blas::Api& api = blas::api();
        blas::Handle h = nullptr;
        api.create(&h);
        const size_t ne =
            static_cast<size_t>(std::max(1, std::max(lda, 1)) * std::max(1, std::max(mm, std::max(n, k))));
        std::vector<float> A(ne, 1.0f), B(static_cast<size_t>(std::max(1, ldb)) * std::max(1, std::max(n, k)), 1.0f);
        std::vector<float> C(static_cast<size_t>(std::max(1, ldc)) * std::max(1, n), 0.0f);
        const float one = 1.0f, zero = 0.0f;
        const blas::Status st = api.sgemm(h, ta == "N" ? blas::OP_N : blas::OP_T, tb == "N" ? blas::OP_N : blas::OP_T,
                                          mm, n, k, &one, A.data(), lda, B.data(), ldb, &zero, C.data(), ldc);
        api.destroy(h);
        return std::string(blas::status_name(st));
      },
      py::arg("transa"), py::arg("transb"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("lda"), py::arg("ldb"),
      py::arg("ldc"), "The cuBLAS stand-in's status for a GEMM of these sizes (its argument checks).");
#endif
}
