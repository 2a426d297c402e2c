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

// An optional argument given as a py::object (None checked by the caller) as the numpy array it
// must be: a list or another array-like would be converted into a temporary, which the
// returned data pointer would outlive (and which an output would be written into, unseen).
inline py::array ndarray(const py::handle& o, const char* name) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(name) + ": expected a numpy array, got " +
                         std::string(py::str(o.get_type().attr("__name__"))));
  return py::reinterpret_borrow<py::array>(o);
}

// One array of a call, for distinct_memory: None (an optional argument not given) is skipped.
struct Region {
  const char* name;
  py::handle array;
  bool written;
};

// Every array a call writes shares no memory with any other array of the call (a momentum
// buffer that is the weights, or an output that overlaps an input, would make the kernels read
// what they write: undefined with their restrict pointers). Call after `checked` (C-contiguous
// arrays span [data, data + nbytes)).
inline void distinct_memory(std::initializer_list<Region> regions) {
  struct Span {
    const char* name;
    uintptr_t lo, hi;
    bool written;
  };
  std::vector<Span> spans;
  for (const Region& r : regions) {
    if (r.array.is_none()) continue;
    const py::array a = py::reinterpret_borrow<py::array>(r.array);
    if (a.nbytes() == 0) continue;
    const uintptr_t lo = reinterpret_cast<uintptr_t>(a.data());
    spans.push_back({r.name, lo, lo + static_cast<uintptr_t>(a.nbytes()), r.written});
  }
  for (size_t j = 1; j < spans.size(); ++j)
    for (size_t i = 0; i < j; ++i)
      if ((spans[i].written || spans[j].written) && spans[i].lo < spans[j].hi && spans[j].lo < spans[i].hi)
        throw py::value_error(std::string(spans[j].name) + ": shares memory with " + spans[i].name +
                              "; every array a call writes must have its own memory");
}

}  // namespace pyireg_bind
