// cuBLAS for the GPU build, loaded at run time: dlopen of libcublas.so.13 (first from the path
// pyireg.cuda finds beside torch's nvidia wheels, then from the loader path), so that building
// pyireg._cuda needs nvcc alone. The symbols are cuBLAS's v2 entry points, whose signatures
// cuda/blas.h declares with the same types.
#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda/blas.h"

namespace pyireg {
namespace blas {

namespace {
std::mutex g_lock;
std::string g_path;
const char* kSoname = "libcublas.so.13";

template <class F>
void bind(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) throw std::runtime_error(std::string("cuBLAS: ") + kSoname + " has no symbol " + name);
}
}  // namespace

void set_library_path(const std::string& path) {
  std::lock_guard<std::mutex> g(g_lock);
  g_path = path;
}

const Api& api() {
  static Api table{};
  static bool loaded = false;
  std::lock_guard<std::mutex> g(g_lock);
  if (loaded) return table;
  void* lib = nullptr;
  std::string tried;
  if (!g_path.empty()) {
    lib = dlopen(g_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) tried = g_path + " (" + dlerror() + "); ";
  }
  if (!lib) {
    lib = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) tried += std::string(kSoname) + " on the loader path (" + dlerror() + ")";
  }
  if (!lib)
    throw std::runtime_error("cuBLAS not found: tried " + tried +
                             ". Install the nvidia-cublas wheel (it comes with torch's CUDA build) or put "
                             "libcublas.so.13 on LD_LIBRARY_PATH");
  Api a{};
  bind(lib, "cublasCreate_v2", a.create);
  bind(lib, "cublasDestroy_v2", a.destroy);
  bind(lib, "cublasSetStream_v2", a.set_stream);
  bind(lib, "cublasSetMathMode", a.set_math_mode);
  bind(lib, "cublasSgemm_v2", a.sgemm);
  bind(lib, "cublasDgemm_v2", a.dgemm);
  table = a;
  loaded = true;
  return table;
}

}  // namespace blas
}  // namespace pyireg
