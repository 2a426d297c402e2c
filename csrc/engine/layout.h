// The layout of a packed model, the same on every device: N networks sharing d inputs and k
// outputs, network n owning hidden units offsets[n] .. offsets[n+1] of S. How a device cuts the
// units into work (the CPU's chunks and groups, cpu/plan.h) is that device's business.
#pragma once

#include <cstdint>
#include <vector>

namespace pyireg {

struct Layout {
  int64_t N = 0, S = 0, d = 0, k = 0;
  std::vector<int64_t> offsets;  // N + 1
};

// Throws std::invalid_argument unless N >= 1 and 0 = offsets[0] < offsets[1] < ... < offsets[N].
void validate_offsets(const int64_t* offsets, int64_t N);

// Validates the offsets (above), d >= 1 and k >= 1, and copies them (std::invalid_argument).
Layout make_layout(const int64_t* offsets, int64_t N, int64_t d, int64_t k);

}  // namespace pyireg
