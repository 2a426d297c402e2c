// The registry of backends (backend.h): one slot per device and dtype, filled by the backends'
// static registrars when their libraries load, read at every call.
#include "engine/backend.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace pyireg {

namespace {
template <class T>
std::atomic<const Backend<T>*>* slots() {
  static std::atomic<const Backend<T>*> s[kDevices] = {};
  return s;
}
}  // namespace

void register_backend(const Backend<float>& f32, const Backend<double>& f64) {
  if (f32.device != f64.device) throw std::invalid_argument("register_backend: the two tables name different devices");
  slots<float>()[static_cast<int>(f32.device)].store(&f32);
  slots<double>()[static_cast<int>(f64.device)].store(&f64);
}

template <class T>
const Backend<T>& backend(Device d) {
  const Backend<T>* b = slots<T>()[static_cast<int>(d)].load(std::memory_order_acquire);
  if (!b)
    throw std::runtime_error(std::string("device ") + device_name(d) +
                             ": no backend registered (this build of pyireg has no kernels for it)");
  return *b;
}
template const Backend<float>& backend<float>(Device);
template const Backend<double>& backend<double>(Device);

bool backend_registered(Device d) { return slots<float>()[static_cast<int>(d)].load() != nullptr; }

}  // namespace pyireg
