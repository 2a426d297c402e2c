// Validation of a packed model's layout (layout.h) and the device names of types.h.
#include "engine/layout.h"

#include <stdexcept>
#include <string>

#include "engine/types.h"

namespace pyireg {

const char* device_name(Device d) {
  switch (d) {
    case Device::cpu: return "cpu";
    case Device::cuda: return "cuda";
  }
  return "unknown";
}

void validate_offsets(const int64_t* offsets, int64_t N) {
  if (N < 1) throw std::invalid_argument("offsets: expected at least two entries (one network)");
  if (offsets[0] != 0) throw std::invalid_argument("offsets: expected offsets[0] == 0");
  for (int64_t n = 0; n < N; ++n)
    if (offsets[n + 1] <= offsets[n])
      throw std::invalid_argument("offsets: expected strictly increasing offsets (every width >= 1)");
}

Layout make_layout(const int64_t* offsets, int64_t N, int64_t d, int64_t k) {
  validate_offsets(offsets, N);
  if (d < 1) throw std::invalid_argument("d: expected a positive number of input features");
  if (k < 1) throw std::invalid_argument("k: expected a positive number of outputs");
  Layout l;
  l.N = N;
  l.d = d;
  l.k = k;
  l.offsets.assign(offsets, offsets + N + 1);
  l.S = l.offsets[N];
  return l;
}

}  // namespace pyireg
