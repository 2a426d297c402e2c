// pyireg._cuda (nvcc, a real device) and pyireg._cuda_emu (the emulation): the same module
// definition, named by PYIREG_CUDA_MODULE. std::invalid_argument becomes ValueError; a kernel
// error, an emulated divergence or deadlock, or a cuBLAS status becomes RuntimeError.
#include <pybind11/pybind11.h>

#include <stdexcept>

namespace py = pybind11;

void register_cuda(py::module_& m);

PYBIND11_MODULE(PYIREG_CUDA_MODULE, m) {
  m.doc() = "pyireg's CUDA engine (private; use pyireg.cuda)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  register_cuda(m);
}
