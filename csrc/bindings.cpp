// pyireg._core: the module definition. Each area registers its own functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_packed_mlp(py::module_& m);
void register_config(py::module_& m);
void register_rescale(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyireg native core: packed two-layer networks on the CPU (private; use pyireg.*)";
  register_config(m);
  register_packed_mlp(m);
  register_rescale(m);
}
