// Binding of the packed-network engine: checks shapes/dtypes, releases the GIL, calls the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings_check.h"
#include "cpu/packed_mlp.h"

namespace py = pybind11;
using pyireg_bind::checked;
using namespace pyireg;

namespace {

Activation parse_activation(const std::string& s) {
  if (s == "relu") return Activation::relu;
  if (s == "linear") return Activation::linear;
  throw py::value_error("activation: expected 'relu' or 'linear', got '" + s + "'");
}

template <class T>
class Engine {
 public:
  Engine(const py::array& offsets, int64_t d, int64_t k, const std::string& activation, int64_t chunk_units,
         int64_t group_units)
      : act_(parse_activation(activation)) {
    if (chunk_units < 1) throw py::value_error("chunk_units: expected a positive integer");
    if (group_units < 1) throw py::value_error("group_units: expected a positive integer");
    if (d < 1) throw py::value_error("d: expected a positive number of input features");
    if (k < 1) throw py::value_error("k: expected a positive number of classes");
    const int64_t* off = checked<int64_t>(offsets, "offsets", {-1}, false);
    const int64_t n = offsets.shape(0) - 1;
    if (n < 1) throw py::value_error("offsets: expected at least two entries (one network)");
    plan_ = make_plan(off, n, d, k, chunk_units, group_units);
  }

  int64_t N() const { return plan_.N; }
  int64_t S() const { return plan_.S; }
  int64_t d() const { return plan_.d; }
  int64_t k() const { return plan_.k; }
  const Workspace<T>& workspace() const { return ws_; }
  int64_t num_groups() const { return static_cast<int64_t>(plan_.group_chunk_ptr.size()) - 1; }

  py::array_t<T> forward(const py::array& U, const py::array& V, const py::array& X) {
    Call<T> c = base(U, V);
    c.B = batch_x(X, c);
    py::array_t<T> out({plan_.N, c.B, plan_.k});
    c.logits_out = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      pyireg::forward(ws_, c);
    }
    return out;
  }

  py::array_t<double> loss_grad(const py::array& U, const py::array& V, const py::array& X,
                                const py::array& y, const py::array& gU, const py::array& gV) {
    Call<T> c = base(U, V);
    c.B = batch_xy(X, y, c);
    c.gU = checked<T>(gU, "gU", {plan_.S, plan_.d}, true);
    c.gV = checked<T>(gV, "gV", {plan_.S, plan_.k}, true);
    py::array_t<double> loss(plan_.N);
    c.loss = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      pyireg::loss_grad(ws_, c);
    }
    return loss;
  }

  py::array_t<double> sgd_step(const py::array& U, const py::array& V, const py::array& bufU,
                               const py::array& bufV, const py::array& X, const py::array& y,
                               const py::array& lr, const py::array& momentum, const py::array& wd) {
    Call<T> c = base(U, V);
    c.B = batch_xy(X, y, c);
    c.bufU = checked<T>(bufU, "bufU", {plan_.S, plan_.d}, true);
    c.bufV = checked<T>(bufV, "bufV", {plan_.S, plan_.k}, true);
    c.lr = checked<T>(lr, "lr", {plan_.N}, false);
    c.momentum = checked<T>(momentum, "momentum", {plan_.N}, false);
    c.weight_decay = checked<T>(wd, "weight_decay", {plan_.N}, false);
    py::array_t<double> loss(plan_.N);
    c.loss = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      pyireg::sgd_step(ws_, c);
    }
    return loss;
  }

  py::tuple evaluate(const py::array& U, const py::array& V, const py::array& X, const py::array& y,
                     int64_t block) {
    if (block < 1) throw py::value_error("batch_size: expected a positive integer");
    Call<T> c = base(U, V);
    c.B = batch_xy(X, y, c);
    c.eval_block = block;
    py::array_t<int64_t> errors(plan_.N);
    py::array_t<double> loss(plan_.N);
    c.errors = errors.mutable_data();
    c.loss = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      pyireg::evaluate(ws_, c);
    }
    return py::make_tuple(errors, loss);
  }

 private:
  Call<T> base(const py::array& U, const py::array& V) {
    Call<T> c;
    c.plan = &plan_;
    c.act = act_;
    c.U = checked<T>(U, "U", {plan_.S, plan_.d}, true);
    c.V = checked<T>(V, "V", {plan_.S, plan_.k}, true);
    return c;
  }
  int64_t batch_x(const py::array& X, Call<T>& c) {
    c.X = checked<T>(X, "X", {-1, plan_.d}, false);
    return X.shape(0);
  }
  int64_t batch_xy(const py::array& X, const py::array& y, Call<T>& c) {
    const int64_t B = batch_x(X, c);
    c.y = checked<int32_t>(y, "y", {B}, false);
    for (int64_t b = 0; b < B; ++b)
      if (c.y[b] < 0 || c.y[b] >= plan_.k)
        throw py::value_error("y: expected labels in [0, " + std::to_string(plan_.k) + "), got " +
                              std::to_string(c.y[b]) + " at index " + std::to_string(b));
    return B;
  }

  Plan plan_;
  Activation act_;
  Workspace<T> ws_;
};

template <class T>
void bind_engine(py::module_& m, const char* name) {
  py::class_<Engine<T>>(m, name)
      .def(py::init<const py::array&, int64_t, int64_t, const std::string&, int64_t, int64_t>(),
           py::arg("offsets"), py::arg("d"), py::arg("k"), py::arg("activation") = "relu",
           py::arg("chunk_units") = 192, py::arg("group_units") = 8192)
      .def_property_readonly("num_groups", [](const Engine<T>& e) { return e.num_groups(); })
      .def_property_readonly("workspace_bytes", [](const Engine<T>& e) { return e.workspace().bytes(); },
                             "Bytes held by the native scratch buffers (grown on demand, then reused).")
      .def_property_readonly("workspace_allocations", [](const Engine<T>& e) { return e.workspace().allocations; },
                             "How many times a scratch buffer had to grow (no step allocates once warmed up).")
      .def_property_readonly("N", &Engine<T>::N)
      .def_property_readonly("S", &Engine<T>::S)
      .def_property_readonly("d", &Engine<T>::d)
      .def_property_readonly("k", &Engine<T>::k)
      .def("forward", &Engine<T>::forward, py::arg("U"), py::arg("V"), py::arg("X"))
      .def("loss_grad", &Engine<T>::loss_grad, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("y"),
           py::arg("gU"), py::arg("gV"))
      .def("sgd_step", &Engine<T>::sgd_step, py::arg("U"), py::arg("V"), py::arg("bufU"),
           py::arg("bufV"), py::arg("X"), py::arg("y"), py::arg("lr"), py::arg("momentum"),
           py::arg("weight_decay"))
      .def("evaluate", &Engine<T>::evaluate, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("y"),
           py::arg("batch_size"));
}

}  // namespace

void register_packed_mlp(py::module_& m) {
  bind_engine<float>(m, "PackedEngineF32");
  bind_engine<double>(m, "PackedEngineF64");
}

void register_config(py::module_& m) {
  m.def("build_config", []() {
    py::dict d;
#if defined(_OPENMP)
    d["openmp"] = true;
    d["openmp_version"] = static_cast<int>(_OPENMP);
#else
    d["openmp"] = false;
    d["openmp_version"] = 0;
#endif
    py::list simd;
    simd.append("generic");
#if defined(PYIREG_HAVE_AVX2)
    simd.append("avx2");
#endif
    d["simd_compiled"] = simd;
    d["simd_active"] = active_simd() == Simd::avx2 ? "avx2" : "generic";
    d["cuda"] = false;
    return d;
  }, "What was compiled in: OpenMP, SIMD targets (and the one in use), CUDA.");
  m.def("set_simd", [](const std::string& s) {
    if (s == "generic") set_simd(Simd::generic);
    else if (s == "avx2") {
      if (!simd_available(Simd::avx2)) throw py::value_error("simd: 'avx2' is not available on this CPU/build");
      set_simd(Simd::avx2);
    } else throw py::value_error("simd: expected 'generic' or 'avx2', got '" + s + "'");
  }, py::arg("simd"), "Force a SIMD target (for testing the fallback path).");
  m.def("simd_available", [](const std::string& s) {
    if (s == "generic") return true;
    if (s == "avx2") return simd_available(Simd::avx2);
    throw py::value_error("simd: expected 'generic' or 'avx2', got '" + s + "'");
  }, py::arg("simd"));
  m.def("get_num_threads", &max_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads: expected a positive integer, got " + std::to_string(n));
    set_num_threads(n);
  }, py::arg("n"));
}
