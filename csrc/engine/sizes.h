// Size arithmetic that cannot overflow, and the memory limit every allocation is checked
// against before it is made: a request that cannot fit fails with MemoryLimitError (MemoryError
// in Python) naming the estimate, instead of a crash or a half-built object.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pyireg {

// More memory than the limit (or than int64 can count) would be needed.
class MemoryLimitError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// a * b and a + b for non-negative sizes; throw MemoryLimitError naming `what` on overflow.
int64_t checked_mul(int64_t a, int64_t b, const char* what);
int64_t checked_add(int64_t a, int64_t b, const char* what);
inline int64_t checked_mul3(int64_t a, int64_t b, int64_t c, const char* what) {
  return checked_mul(checked_mul(a, b, what), c, what);
}

// The limit allocations are checked against: the machine's physical memory unless set.
int64_t memory_limit();
// Set the limit in bytes (> 0), or restore the default with 0.
void set_memory_limit(int64_t bytes);
int64_t physical_memory();

// Throw MemoryLimitError if `bytes` exceeds the limit: "<what> needs about X GiB, more than ...".
void check_fits(int64_t bytes, const std::string& what);

std::string format_bytes(int64_t bytes);

}  // namespace pyireg
