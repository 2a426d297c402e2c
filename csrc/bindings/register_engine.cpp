// Binding of the CPU engine (cpu/cpu_engine.h): checks every array's dtype, shape, contiguity and
// writeability, releases the GIL and calls. One name per operation: forward, backward,
// loss_and_grad, step, apply_update, evaluate, balance, normalize_units, measures, unit_balance,
// unit_stats, unit_moments, ddp_scale.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bindings/check.h"
#include "cpu/measures.h"
#include "cpu/cpu_engine.h"

namespace py = pybind11;
using pyireg_bind::checked;
using pyireg_bind::distinct_memory;
using pyireg_bind::ndarray;
using namespace pyireg;

namespace {

Activation parse_activation(const std::string& s) {
  if (s == "relu") return Activation::relu;
  if (s == "linear") return Activation::linear;
  throw py::value_error("activation: expected 'relu' or 'linear', got '" + s + "'");
}

Loss parse_loss(const std::string& s) {
  if (s == "cross_entropy") return Loss::cross_entropy;
  if (s == "squared") return Loss::squared;
  throw py::value_error("loss: expected 'cross_entropy' or 'squared', got '" + s + "'");
}

Rule parse_rule(const std::string& s) {
  if (s == "momentum_sgd") return Rule::momentum_sgd;
  if (s == "path_sgd") return Rule::path_sgd;
  if (s == "ddp_sgd") return Rule::ddp_sgd;
  if (s == "nesterov_sgd") return Rule::nesterov_sgd;
  if (s == "adam") return Rule::adam;
  if (s == "adamw") return Rule::adamw;
  throw py::value_error(
      "rule: expected 'momentum_sgd', 'path_sgd', 'ddp_sgd', 'nesterov_sgd', 'adam' or 'adamw', got '" + s + "'");
}

template <class T>
class PyEngine {
 public:
  PyEngine(const py::array& offsets, int64_t d, int64_t k, const std::string& activation, const std::string& loss,
           int64_t chunk_units, int64_t group_units)
      : e_(make(offsets, d, k, activation, loss, chunk_units, group_units)) {}

  Engine<T>& engine() { return *e_; }
  const Engine<T>& engine() const { return *e_; }

  py::array_t<T> forward(const py::array& U, const py::array& V, const py::array& X, const py::object& act) const {
    const auto [u, v] = weights(U, V, false);
    const T* x = batch(X);
    const int64_t B = X.shape(0);
    T* a = act.is_none() ? nullptr
                         : checked<T>(ndarray(act, "act"), "act", {e_->S(), Engine<T>::activation_columns(B)}, true);
    distinct_memory({{"U", U, false}, {"V", V, false}, {"X", X, false}, {"act", act, true}});
    check_fits(checked_mul3(checked_mul(e_->N(), B, "outputs"), e_->k(), sizeof(T), "outputs"),
               "the outputs of " + std::to_string(e_->N()) + " networks on " + std::to_string(B) + " samples");
    py::array_t<T> out({e_->N(), B, e_->k()});
    T* o = out.mutable_data();
    py::gil_scoped_release nogil;
    e_->forward(u, v, x, B, o, a);
    return out;
  }

  void backward(const py::array& U, const py::array& V, const py::array& X, const py::array& grad_out,
                const py::object& gU, const py::object& gV, const py::object& gX, const py::object& act) const {
    const auto [u, v] = weights(U, V, false);
    const T* x = batch(X);
    const int64_t B = X.shape(0);
    const T* go = checked<T>(grad_out, "grad_out", {e_->N(), B, e_->k()}, false);
    T* pu = gU.is_none() ? nullptr : checked<T>(ndarray(gU, "gU"), "gU", {e_->S(), e_->d()}, true);
    T* pv = gV.is_none() ? nullptr : checked<T>(ndarray(gV, "gV"), "gV", {e_->S(), e_->k()}, true);
    T* px = gX.is_none() ? nullptr : checked<T>(ndarray(gX, "gX"), "gX", {B, e_->d()}, true);
    distinct_memory({{"U", U, false},
                     {"V", V, false},
                     {"X", X, false},
                     {"grad_out", grad_out, false},
                     {"gU", gU, true},
                     {"gV", gV, true},
                     {"gX", gX, true}});
    const T* pa = act.is_none()
                      ? nullptr
                      : checked<T>(ndarray(act, "act"), "act", {e_->S(), Engine<T>::activation_columns(B)}, false);
    py::gil_scoped_release nogil;
    e_->backward(u, v, x, B, go, pu, pv, px, pa);
  }

  py::array_t<double> loss_and_grad(const py::array& U, const py::array& V, const py::array& X, const py::array& y,
                                    const py::object& weights_, const py::array& gU, const py::array& gV) const {
    const auto [u, v] = weights(U, V, false);
    const T* x = batch(X);
    std::vector<int32_t> labels;
    const Targets<T> t = targets(y, weights_, X.shape(0), labels);
    T* pu = checked<T>(gU, "gU", {e_->S(), e_->d()}, true);
    T* pv = checked<T>(gV, "gV", {e_->S(), e_->k()}, true);
    distinct_memory({{"U", U, false}, {"V", V, false}, {"X", X, false}, {"gU", gU, true}, {"gV", gV, true}});
    py::array_t<double> loss(e_->N());
    double* l = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      e_->loss_and_grad(u, v, x, X.shape(0), t, l, pu, pv);
    }
    return loss;
  }

  py::array_t<double> step(const py::array& U, const py::array& V, const py::array& X, const py::array& y,
                           const py::object& weights_, const std::string& rule, const py::array& state_U,
                           const py::array& state_V, const py::array& lr, const py::array& momentum,
                           const py::array& weight_decay, const py::object& adam) {
    const auto [u, v] = weights(U, V, true);
    const T* x = batch(X);
    std::vector<int32_t> labels;
    const Targets<T> t = targets(y, weights_, X.shape(0), labels);
    const UpdateRule<T> r = update_rule(rule, state_U, state_V, lr, momentum, weight_decay, adam);
    update_memory(U, V, {"X", X, false}, {"", py::none(), false}, state_U, state_V, adam);
    py::array_t<double> loss(e_->N());
    double* l = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      e_->step(u, v, x, X.shape(0), t, r, l);
    }
    return loss;
  }

  void apply_update(const py::array& U, const py::array& V, const py::array& gU, const py::array& gV,
                    const std::string& rule, const py::array& state_U, const py::array& state_V, const py::array& lr,
                    const py::array& momentum, const py::array& weight_decay, const py::object& adam) {
    const auto [u, v] = weights(U, V, true);
    const T* pu = checked<T>(gU, "gU", {e_->S(), e_->d()}, false);
    const T* pv = checked<T>(gV, "gV", {e_->S(), e_->k()}, false);
    const UpdateRule<T> r = update_rule(rule, state_U, state_V, lr, momentum, weight_decay, adam);
    update_memory(U, V, {"gU", gU, false}, {"gV", gV, false}, state_U, state_V, adam);
    py::gil_scoped_release nogil;
    e_->apply_update(u, v, pu, pv, r);
  }

  py::tuple evaluate(const py::array& U, const py::array& V, const py::array& X, const py::array& y,
                     const py::object& weights_, int64_t batch_size) const {
    const auto [u, v] = weights(U, V, false);
    const T* x = batch(X);
    std::vector<int32_t> labels;
    const Targets<T> t = targets(y, weights_, X.shape(0), labels);
    py::array_t<int64_t> errors(e_->N());
    py::array_t<double> loss(e_->N());
    int64_t* pe = errors.mutable_data();
    double* pl = loss.mutable_data();
    {
      py::gil_scoped_release nogil;
      e_->evaluate(u, v, x, X.shape(0), t, batch_size, pl, pe);
    }
    return py::make_tuple(errors, loss);
  }

  int64_t balance(const py::array& U, const py::array& V) {
    const auto [u, v] = weights(U, V, true);
    distinct_memory({{"U", U, true}, {"V", V, true}});
    py::gil_scoped_release nogil;
    return e_->balance(u, v);
  }

  int64_t normalize_units(const py::array& U, const py::array& V) {
    const auto [u, v] = weights(U, V, true);
    distinct_memory({{"U", U, true}, {"V", V, true}});
    py::gil_scoped_release nogil;
    return e_->normalize_units(u, v);
  }

  py::dict measures(const py::array& U, const py::array& V) const {
    const auto [u, v] = weights(U, V, false);
    static const char* names[6] = {"l2_penalty", "group_l1", "path_l1", "path_l2", "norm_U", "norm_V"};
    py::array_t<double> arrays[6];
    double* out[6];
    for (int i = 0; i < 6; ++i) {
      arrays[i] = py::array_t<double>(e_->N());
      out[i] = arrays[i].mutable_data();
    }
    {
      py::gil_scoped_release nogil;
      e_->measures(u, v, out);
    }
    py::dict d;
    for (int i = 0; i < 6; ++i) d[names[i]] = arrays[i];
    return d;
  }

  py::array_t<double> unit_stats(const py::array& U, const py::array& V, const py::object& U0, const py::object& V0,
                                 const py::object& p) const {
    const auto [u, v] = weights(U, V, false);
    const T* u0 = U0.is_none() ? nullptr : checked<T>(ndarray(U0, "U0"), "U0", {e_->S(), e_->d()}, false);
    const T* v0 = V0.is_none() ? nullptr : checked<T>(ndarray(V0, "V0"), "V0", {e_->S(), e_->k()}, false);
    if ((u0 == nullptr) != (v0 == nullptr)) throw py::value_error("U0, V0: expected both initial layers or neither");
    double pv = 0;
    if (!p.is_none()) {
      pv = p.cast<double>();
      if (!(pv > 0 && std::isfinite(pv)))
        throw py::value_error("p: expected a finite p > 0, got " + std::to_string(pv));
    }
    check_fits(checked_mul3(e_->S(), kUnitStats, sizeof(double), "unit statistics"),
               "the unit statistics of " + std::to_string(e_->S()) + " units");
    py::array_t<double> out({e_->S(), static_cast<int64_t>(kUnitStats)});
    double* o = out.mutable_data();
    py::gil_scoped_release nogil;
    e_->unit_stats(u, v, u0, v0, pv, o);
    return out;
  }

  py::tuple unit_moments(const py::array& U, const py::array& X, int64_t batch_size) const {
    const T* u = checked<T>(U, "U", {e_->S(), e_->d()}, false);
    const T* x = batch(X);
    py::array_t<double> z2(e_->S()), a2(e_->S());
    double* pz = z2.mutable_data();
    double* pa = a2.mutable_data();
    {
      py::gil_scoped_release nogil;
      e_->unit_moments(u, x, X.shape(0), batch_size, pz, pa);
    }
    return py::make_tuple(z2, a2);
  }

  void ddp_scale(const py::array& U, const py::array& V, const py::array& X, const py::array& alpha,
                 const py::array& kU, const py::array& kV) const {
    const auto [u, v] = weights(U, V, false);
    const T* x = batch(X);
    const T* a = checked<T>(alpha, "alpha", {e_->N()}, false);
    T* pu = checked<T>(kU, "kU", {e_->S(), e_->d()}, true);
    T* pv = checked<T>(kV, "kV", {e_->S(), e_->k()}, true);
    distinct_memory({{"U", U, false}, {"V", V, false}, {"X", X, false}, {"kU", kU, true}, {"kV", kV, true}});
    py::gil_scoped_release nogil;
    e_->ddp_scale(u, v, x, X.shape(0), a, pu, pv);
  }

  py::array_t<double> unit_balance(const py::array& U, const py::array& V) const {
    const auto [u, v] = weights(U, V, false);
    py::array_t<double> out(e_->S());
    double* o = out.mutable_data();
    py::gil_scoped_release nogil;
    e_->unit_balance(u, v, o);
    return out;
  }

 private:
  static std::unique_ptr<Engine<T>> make(const py::array& offsets, int64_t d, int64_t k, const std::string& activation,
                                         const std::string& loss, int64_t chunk_units, int64_t group_units) {
    const Activation a = parse_activation(activation);
    const Loss l = parse_loss(loss);
    const int64_t* off = checked<int64_t>(offsets, "offsets", {-1}, false);
    const int64_t n = offsets.shape(0) - 1;
    if (n < 1) throw py::value_error("offsets: expected at least two entries (one network)");
    return std::make_unique<Engine<T>>(off, n, d, k, a, l, chunk_units, group_units);
  }

  std::pair<T*, T*> weights(const py::array& U, const py::array& V, bool writable) const {
    return {checked<T>(U, "U", {e_->S(), e_->d()}, writable), checked<T>(V, "V", {e_->S(), e_->k()}, writable)};
  }

  const T* batch(const py::array& X) const {
    const T* x = checked<T>(X, "X", {-1, e_->d()}, false);
    if (X.shape(0) < 1) throw py::value_error("X: expected at least one sample, got an empty batch");
    return x;
  }

  // The labels are copied (into `own`, which the caller keeps for the call): the engine checks
  // their range and then indexes with them after the GIL is released, and another thread may
  // change the caller's array in between (a label changed after the check read out of bounds).
  Targets<T> targets(const py::array& y, const py::object& w, int64_t B, std::vector<int32_t>& own) const {
    Targets<T> t;
    t.loss = e_->loss();
    if (t.loss == Loss::cross_entropy) {
      const int32_t* given = checked<int32_t>(y, "y", {B}, false);
      own.assign(given, given + B);
      t.labels = own.data();
      if (!w.is_none()) throw py::value_error("weights: entry weights apply to the squared loss only");
    } else {
      t.values = checked<T>(y, "y", {B, e_->k()}, false);
      if (!w.is_none()) t.weights = checked<T>(ndarray(w, "weights"), "weights", {B, e_->k()}, false);
    }
    return t;
  }

  // The memory check of a call that updates U, V and the rule's state (Adam's second moments
  // too, from the adam tuple), beside two read-only inputs (a name "" and None for none).
  static void update_memory(const py::array& U, const py::array& V, const pyireg_bind::Region& in1,
                            const pyireg_bind::Region& in2, const py::array& state_U, const py::array& state_V,
                            const py::object& adam) {
    py::object s2U = py::none(), s2V = py::none();
    if (!adam.is_none()) {
      const py::tuple a = adam.cast<py::tuple>();
      s2U = a[0];
      s2V = a[1];
    }
    distinct_memory({{"U", U, true},
                     {"V", V, true},
                     in1,
                     in2,
                     {"state_U", state_U, true},
                     {"state_V", state_V, true},
                     {"state2_U", s2U, true},
                     {"state2_V", s2V, true}});
  }

  UpdateRule<T> update_rule(const std::string& rule, const py::array& state_U, const py::array& state_V,
                            const py::array& lr, const py::array& momentum, const py::array& weight_decay,
                            const py::object& adam) const {
    UpdateRule<T> r;
    r.rule = parse_rule(rule);
    r.state_U = checked<T>(state_U, "state_U", {e_->S(), e_->d()}, true);
    r.state_V = checked<T>(state_V, "state_V", {e_->S(), e_->k()}, true);
    r.lr = checked<T>(lr, "lr", {e_->N()}, false);
    r.momentum = checked<T>(momentum, "momentum", {e_->N()}, false);
    r.weight_decay = checked<T>(weight_decay, "weight_decay", {e_->N()}, false);
    const bool is_adam = r.rule == Rule::adam || r.rule == Rule::adamw;
    if (is_adam != !adam.is_none())
      throw py::value_error(
          "adam: expected (state2_U, state2_V, beta1, beta2, eps, t) exactly for the rules 'adam' "
          "and 'adamw'");
    if (is_adam) {
      const py::tuple a = adam.cast<py::tuple>();
      if (a.size() != 6) throw py::value_error("adam: expected (state2_U, state2_V, beta1, beta2, eps, t)");
      r.state2_U = checked<T>(ndarray(a[0], "state2_U"), "state2_U", {e_->S(), e_->d()}, true);
      r.state2_V = checked<T>(ndarray(a[1], "state2_V"), "state2_V", {e_->S(), e_->k()}, true);
      r.beta1 = checked<T>(ndarray(a[2], "beta1"), "beta1", {e_->N()}, false);
      r.beta2 = checked<T>(ndarray(a[3], "beta2"), "beta2", {e_->N()}, false);
      r.eps = checked<T>(ndarray(a[4], "eps"), "eps", {e_->N()}, false);
      r.t = checked<int64_t>(ndarray(a[5], "t"), "t", {e_->N()}, false);
    }
    return r;
  }

  std::unique_ptr<Engine<T>> e_;
};

template <class T>
void bind_engine(py::module_& m, const char* name) {
  using E = PyEngine<T>;
  py::class_<E>(m, name, "The native engine of one packed model (private; use pyireg.PackedMLP).")
      .def(py::init<const py::array&, int64_t, int64_t, const std::string&, const std::string&, int64_t, int64_t>(),
           py::arg("offsets"), py::arg("d"), py::arg("k"), py::arg("activation") = "relu",
           py::arg("loss") = "cross_entropy", py::arg("chunk_units") = 192, py::arg("group_units") = 512)
      .def_property_readonly("N", [](const E& e) { return e.engine().N(); })
      .def_property_readonly("S", [](const E& e) { return e.engine().S(); })
      .def_property_readonly("d", [](const E& e) { return e.engine().d(); })
      .def_property_readonly("k", [](const E& e) { return e.engine().k(); })
      .def_property_readonly("num_groups", [](const E& e) { return e.engine().plan().ngroups(); })
      .def(
          "runs_by_groups", [](const E& e, int threads) { return e.engine().plan().by_groups(threads); },
          py::arg("threads"), "Whether a training pass on this many threads runs whole groups on one thread each.")
      .def_property_readonly("weights_bytes", [](const E& e) { return e.engine().weights_bytes(); })
      .def_property_readonly(
          "workspace_bytes", [](const E& e) { return e.engine().workspace_bytes(); },
          "Bytes held by the native scratch buffers (grown on demand, then reused).")
      .def_property_readonly(
          "workspace_allocations", [](const E& e) { return e.engine().workspace_allocations(); },
          "How many times a scratch buffer had to grow (no step allocates once warmed up).")
      .def_property_readonly(
          "workspaces", [](const E& e) { return e.engine().workspaces(); },
          "Scratch workspaces in the pool (one per call that ran concurrently with others).")
      .def(
          "pass_bytes", [](const E& e, int64_t B, bool input_grad) { return e.engine().pass_bytes(B, input_grad); },
          py::arg("B"), py::arg("input_grad") = false, "Scratch bytes of a training pass on B samples.")
      .def_static("activation_columns", &Engine<T>::activation_columns, py::arg("B"),
                  "Columns of the activations forward keeps (act): B rounded up to the SIMD width.")
      .def("forward", &E::forward, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("act") = py::none())
      .def("backward", &E::backward, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("grad_out"),
           py::arg("gU") = py::none(), py::arg("gV") = py::none(), py::arg("gX") = py::none(),
           py::arg("act") = py::none())
      .def("loss_and_grad", &E::loss_and_grad, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("y"),
           py::arg("weights"), py::arg("gU"), py::arg("gV"))
      .def("step", &E::step, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("y"), py::arg("weights"),
           py::arg("rule"), py::arg("state_U"), py::arg("state_V"), py::arg("lr"), py::arg("momentum"),
           py::arg("weight_decay"), py::arg("adam") = py::none())
      .def("apply_update", &E::apply_update, py::arg("U"), py::arg("V"), py::arg("gU"), py::arg("gV"), py::arg("rule"),
           py::arg("state_U"), py::arg("state_V"), py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"),
           py::arg("adam") = py::none())
      .def("evaluate", &E::evaluate, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("y"), py::arg("weights"),
           py::arg("batch_size"))
      .def("balance", &E::balance, py::arg("U"), py::arg("V"))
      .def("normalize_units", &E::normalize_units, py::arg("U"), py::arg("V"))
      .def("measures", &E::measures, py::arg("U"), py::arg("V"))
      .def("unit_balance", &E::unit_balance, py::arg("U"), py::arg("V"))
      .def("unit_stats", &E::unit_stats, py::arg("U"), py::arg("V"), py::arg("U0") = py::none(),
           py::arg("V0") = py::none(), py::arg("p") = py::none(),
           "Per-unit weight statistics (S, 10), float64: ||u||^2, ||v||^2, ||u||_1, ||v||_1, ||u||_p^p, "
           "||v||_p^p, ||u||_inf, ||v||_inf, ||u - u0||^2, ||v - v0||^2 (NaN where p or U0/V0 is not given).")
      .def("unit_moments", &E::unit_moments, py::arg("U"), py::arg("X"), py::arg("batch_size") = 256,
           "Per-unit sums over the samples of X of z^2 and act(z)^2, z = U X^T (U: the model's or one shaped like it).")
      .def("ddp_scale", &E::ddp_scale, py::arg("U"), py::arg("V"), py::arg("X"), py::arg("alpha"), py::arg("kU"),
           py::arg("kV"), "The DDP-SGD scaling 1/kappa of every weight from the batch X, into kU and kV.");
}

}  // namespace

void register_engine(py::module_& m) {
  bind_engine<float>(m, "EngineF32");
  bind_engine<double>(m, "EngineF64");
}
