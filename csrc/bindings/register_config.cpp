// Binding of the process-wide settings: what was built, the SIMD target, the thread count and
// the memory limit.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cpu/cpu.h"
#include "engine/sizes.h"

namespace py = pybind11;
using namespace pyireg;

void register_config(py::module_& m) {
  m.def(
      "build_config",
      []() {
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
#if defined(PYIREG_HAVE_AVX512)
        simd.append("avx512");
#endif
        d["simd_compiled"] = simd;
        d["simd_active"] = simd_name(active_simd());
        d["prefetch_ahead"] = prefetch_ahead();
        d["l2_cache_bytes"] = l2_cache_bytes();
        d["cuda"] = false;
#if defined(PYIREG_SANITIZE)
        d["sanitize"] = PYIREG_SANITIZE;
#else
        d["sanitize"] = "";
#endif
        d["max_num_threads"] = max_num_threads();
        return d;
      },
      "What was compiled in: OpenMP, SIMD targets (and the one in use), CUDA, sanitizers.");
  m.def(
      "set_simd",
      [](const std::string& s) {
        try {
          set_simd(simd_from_name(s));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("simd"), "Force a SIMD target ('generic', 'avx2' or 'avx512'; for testing the other paths).");
  m.def(
      "simd_available",
      [](const std::string& s) {
        try {
          return simd_available(simd_from_name(s));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("simd"));
  m.def("get_num_threads", &num_threads, "Threads every native operation uses (process-wide).");
  m.def("max_num_threads", &max_num_threads, "The largest value set_num_threads accepts: 4 x the processors.");
  m.def(
      "set_num_threads",
      [](int64_t n) {
        if (n < 1 || n > max_num_threads())
          throw py::value_error("num_threads: expected an integer in [1, " + std::to_string(max_num_threads()) +
                                "] (4 x the processors), got " + std::to_string(n));
        set_num_threads(static_cast<int>(n));
      },
      py::arg("n"),
      "Set the threads of every native operation, process-wide (not per calling thread): an integer in "
      "[1, max_num_threads()].");
  m.def("memory_limit", &memory_limit, "Bytes the engine may plan to use (the machine's memory unless set).");
  m.def("set_memory_limit", &set_memory_limit, py::arg("bytes"),
        "Limit the memory the engine may plan to use, in bytes; 0 restores the default (the machine's memory).");
}
