// Overflow-checked size arithmetic and the process-wide memory limit (see sizes.h).
#include "engine/sizes.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace pyireg {

namespace {
std::atomic<int64_t> g_limit{0};  // 0: the physical memory
}

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw MemoryLimitError(std::string(what) + ": the size does not fit in 64 bits");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    throw MemoryLimitError(std::string(what) + ": the size does not fit in 64 bits");
  return r;
}

int64_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return INT64_MAX;
  int64_t r;
  if (__builtin_mul_overflow(static_cast<int64_t>(pages), static_cast<int64_t>(page), &r)) return INT64_MAX;
  return r;
}

int64_t memory_limit() {
  const int64_t l = g_limit.load();
  return l > 0 ? l : physical_memory();
}

void set_memory_limit(int64_t bytes) {
  if (bytes < 0) throw std::invalid_argument("bytes: expected a positive memory limit, or 0 for the default");
  g_limit.store(bytes);
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f TiB", b / (1024.0 * 1024 * 1024 * 1024));
  else if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

void check_fits(int64_t bytes, const std::string& what) {
  const int64_t limit = memory_limit();
  if (bytes > limit)
    throw MemoryLimitError(what + " needs about " + format_bytes(bytes) + ", more than the memory limit of " +
                           format_bytes(limit) + " (the machine's memory unless set by pyireg.set_memory_limit)");
}

}  // namespace pyireg
