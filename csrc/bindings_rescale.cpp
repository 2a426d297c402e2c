// Binding of the per-unit rescalings and measures (rescale.h): checks, GIL release, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings_check.h"
#include "cpu/rescale.h"

namespace py = pybind11;
using pyireg_bind::checked;

namespace {

// U (S, d) and V (S, k) of one dtype, both writeable when `writable`.
template <class T>
std::pair<T*, T*> uv(const py::array& U, const py::array& V, bool writable) {
  T* u = checked<T>(U, "U", {-1, -1}, writable);
  T* v = checked<T>(V, "V", {U.shape(0), -1}, writable);
  return {u, v};
}

template <class F>
auto by_dtype(const py::array& U, F&& f) {
  if (U.dtype().kind() == 'f' && U.itemsize() == 4) return f(float{});
  if (U.dtype().kind() == 'f' && U.itemsize() == 8) return f(double{});
  throw py::type_error("U: expected a float32 or float64 array, got " + std::string(py::str(U.dtype())));
}

}  // namespace

void register_rescale(py::module_& m) {
  m.def("balance_units", [](const py::array& U, const py::array& V) {
    return by_dtype(U, [&](auto t) {
      using T = decltype(t);
      auto [u, v] = uv<T>(U, V, true);
      py::gil_scoped_release nogil;
      return pyireg::balance_units<T>(u, v, U.shape(0), U.shape(1), V.shape(1));
    });
  }, py::arg("U"), py::arg("V"), "Rescale units in place so that ||u_h|| = ||v_h||; returns the number of zero units.");
  m.def("normalize_units", [](const py::array& U, const py::array& V) {
    return by_dtype(U, [&](auto t) {
      using T = decltype(t);
      auto [u, v] = uv<T>(U, V, true);
      py::gil_scoped_release nogil;
      return pyireg::normalize_units<T>(u, v, U.shape(0), U.shape(1), V.shape(1));
    });
  }, py::arg("U"), py::arg("V"), "Rescale units in place so that ||u_h|| = 1; returns the number of units with u_h = 0.");
  m.def("network_measures", [](const py::array& U, const py::array& V, const py::array& offsets) {
    return by_dtype(U, [&](auto t) {
      using T = decltype(t);
      auto [u, v] = uv<T>(U, V, false);
      const int64_t* off = checked<int64_t>(offsets, "offsets", {-1}, false);
      const int64_t N = offsets.shape(0) - 1;
      if (N < 1 || off[0] != 0 || off[N] != U.shape(0))
        throw py::value_error("offsets: expected 0 = offsets[0] <= ... <= offsets[N] = number of rows of U");
      for (int64_t n = 0; n < N; ++n)
        if (off[n + 1] < off[n]) throw py::value_error("offsets: expected a non-decreasing array");
      py::array_t<double> a(N), b(N), c(N), e(N), fu(N), fv(N);
      double *pa = a.mutable_data(), *pb = b.mutable_data(), *pc = c.mutable_data(), *pe = e.mutable_data();
      double *pfu = fu.mutable_data(), *pfv = fv.mutable_data();
      {
        py::gil_scoped_release nogil;
        pyireg::network_measures<T>(u, v, off, N, U.shape(1), V.shape(1), pa, pb, pc, pe, pfu, pfv);
      }
      py::dict out;
      out["l2_penalty"] = a;
      out["group_l1"] = b;
      out["path_l1"] = c;
      out["path_l2"] = e;
      out["norm_U"] = fu;
      out["norm_V"] = fv;
      return out;
    });
  }, py::arg("U"), py::arg("V"), py::arg("offsets"));
  m.def("unit_balance", [](const py::array& U, const py::array& V) {
    return by_dtype(U, [&](auto t) {
      using T = decltype(t);
      auto [u, v] = uv<T>(U, V, false);
      py::array_t<double> out(U.shape(0));
      double* po = out.mutable_data();
      py::gil_scoped_release nogil;
      pyireg::unit_balance<T>(u, v, U.shape(0), U.shape(1), V.shape(1), po);
      return out;
    });
  }, py::arg("U"), py::arg("V"), "Per unit ||u_h||^2 - ||v_h||^2.");
}
