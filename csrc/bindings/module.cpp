// pyireg._core: the module definition. Each area registers its own functions; the engine's
// MemoryLimitError becomes Python's MemoryError with the engine's message.
#include <pybind11/pybind11.h>

#include "engine/sizes.h"

namespace py = pybind11;

void register_config(py::module_& m);
void register_engine(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyireg native core: packed two-layer networks on the CPU (private; use pyireg.*)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const pyireg::MemoryLimitError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
  register_config(m);
  register_engine(m);
}
