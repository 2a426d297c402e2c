// Argument checks shared by the binding files: every message names the argument and what was
// expected, so bad input from Python becomes a ValueError/TypeError, never a crash.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace pyireg_bind {
namespace py = pybind11;

template <class T>
const char* dtype_name();
template <>
inline const char* dtype_name<float>() {
  return "float32";
}
template <>
inline const char* dtype_name<double>() {
  return "float64";
}
template <>
inline const char* dtype_name<int32_t>() {
  return "int32";
}
template <>
inline const char* dtype_name<int64_t>() {
  return "int64";
}

template <class T>
char dtype_kind() {
  return std::is_floating_point<T>::value ? 'f' : 'i';
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) o << ", ";
    if (s[i] < 0)
      o << "*";
    else
      o << s[i];
  }
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

// Checks dtype, shape (-1 = any), C-contiguity and (optionally) writeability; returns the data.
template <class T>
T* checked(const py::array& a, const char* name, const std::vector<int64_t>& shape, bool writable) {
  std::vector<int64_t> got(a.shape(), a.shape() + a.ndim());
  const bool dtype_ok = a.dtype().kind() == dtype_kind<T>() && a.itemsize() == sizeof(T);
  bool shape_ok = got.size() == shape.size();
  for (size_t i = 0; shape_ok && i < shape.size(); ++i) shape_ok = shape[i] < 0 || shape[i] == got[i];
  if (!dtype_ok || !shape_ok) {
    std::ostringstream o;
    o << name << ": expected a " << dtype_name<T>() << " array of shape " << shape_str(shape) << ", got "
      << std::string(py::str(a.dtype())) << " array of shape " << shape_str(got);
    if (!dtype_ok) throw py::type_error(o.str());
    throw py::value_error(o.str());
  }
  // numpy's byteorder: '=' native, '|' not applicable, '<' or '>' explicit (a '>f4' array passed
  // the kind and size check and was read as garbage)
  const std::string order = py::str(a.dtype().attr("byteorder"));
  const uint16_t probe = 1;
  const std::string native = *reinterpret_cast<const unsigned char*>(&probe) == 1 ? "<" : ">";
  if (order != "=" && order != "|" && order != native)
    throw py::type_error(std::string(name) + ": expected native byte order, got " + std::string(py::str(a.dtype())) +
                         "; convert it with .astype(" + dtype_name<T>() + ")");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": expected a writeable array");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

}  // namespace pyireg_bind
