// Builds the Plan of a packed model: fixed chunks of hidden units, cut further at network
// boundaries into runs, and the per-network list of runs used to reduce partial logits.
#include "packed_mlp.h"

#include <algorithm>
#include <stdexcept>

namespace pyireg {

Plan make_plan(const int64_t* offsets, int64_t N, int64_t d, int64_t k, int64_t chunk_units,
               int64_t group_units) {
  if (N < 1) throw std::invalid_argument("offsets: expected at least one network");
  if (chunk_units < 1) throw std::invalid_argument("chunk_units: expected a positive value");
  Plan p;
  p.N = N;
  p.d = d;
  p.k = k;
  p.chunk_units = chunk_units;
  p.offsets.assign(offsets, offsets + N + 1);
  if (p.offsets[0] != 0) throw std::invalid_argument("offsets: expected offsets[0] == 0");
  for (int64_t n = 0; n < N; ++n)
    if (p.offsets[n + 1] <= p.offsets[n])
      throw std::invalid_argument("offsets: expected strictly increasing offsets (every width >= 1)");
  p.S = p.offsets[N];
  // Each network is cut into pieces of chunk_units units counted from its own first unit, and
  // whole pieces are packed greedily into chunks of at most chunk_units units. A network's
  // arithmetic then never depends on its neighbours: it is bit-identical alone or packed.
  std::vector<int64_t> runs_of_net(N, 0);
  p.chunk_begin.assign(1, 0);
  p.chunk_run_ptr.assign(1, 0);
  int64_t in_chunk = 0;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t a = p.offsets[n]; a < p.offsets[n + 1]; a += chunk_units) {
      const int64_t b = std::min(p.offsets[n + 1], a + chunk_units);
      if (in_chunk + (b - a) > chunk_units) {
        p.chunk_begin.push_back(a);
        p.chunk_run_ptr.push_back(static_cast<int64_t>(p.runs.size()));
        in_chunk = 0;
      }
      p.runs.push_back(Run{a, b, n, -1});
      ++runs_of_net[n];
      in_chunk += b - a;
    }
  }
  p.chunk_begin.push_back(p.S);
  p.chunk_run_ptr.push_back(static_cast<int64_t>(p.runs.size()));
  p.net_run_ptr.assign(N + 1, 0);
  for (int64_t n = 0; n < N; ++n) p.net_run_ptr[n + 1] = p.net_run_ptr[n] + runs_of_net[n];
  p.net_runs.assign(p.runs.size(), 0);
  std::vector<int64_t> fill(p.net_run_ptr.begin(), p.net_run_ptr.end() - 1);
  for (int64_t r = 0; r < static_cast<int64_t>(p.runs.size()); ++r) {
    Run& run = p.runs[r];
    p.net_runs[fill[run.net]++] = r;
    if (runs_of_net[run.net] > 1) run.slot = p.nslots++;
  }
  // Groups: close one once it holds group_units units and the next chunk starts a network.
  p.group_chunk_ptr.assign(1, 0);
  p.group_net_ptr.assign(1, 0);
  const int64_t nch = p.nchunks();
  for (int64_t c = 1; c <= nch; ++c) {
    const int64_t g0 = p.chunk_begin[p.group_chunk_ptr.back()];
    const bool last = c == nch;
    const bool starts_net = !last && p.runs[p.chunk_run_ptr[c]].begin == p.offsets[p.runs[p.chunk_run_ptr[c]].net];
    if (last || (starts_net && p.chunk_begin[c] - g0 >= group_units)) {
      p.group_chunk_ptr.push_back(c);
      p.group_net_ptr.push_back(last ? N : p.runs[p.chunk_run_ptr[c]].net);
      p.max_group_units = std::max(p.max_group_units, p.chunk_begin[c] - g0);
    }
  }
  return p;
}

}  // namespace pyireg
