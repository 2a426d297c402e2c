// Builds the Plan of a packed model: fixed chunks of hidden units, cut further at network
// boundaries into runs, the per-network list of runs used to reduce partial outputs, and the
// groups of whole networks a training step streams through.
#include "cpu/plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/sizes.h"

namespace pyireg {

int64_t Plan::bytes() const {
  return static_cast<int64_t>(sizeof(int64_t) *
                                  (offsets.capacity() + chunk_begin.capacity() + chunk_run_ptr.capacity() +
                                   net_run_ptr.capacity() + net_runs.capacity() + group_chunk_ptr.capacity() +
                                   group_net_ptr.capacity() + group_order.capacity()) +
                              sizeof(Run) * runs.capacity());
}

bool Plan::by_groups(int threads) const {
  if (threads <= 1 || ngroups() < threads) return false;
  std::vector<int64_t> load(static_cast<size_t>(threads), 0);
  for (int64_t g : group_order) *std::min_element(load.begin(), load.end()) += group_units(g);
  const int64_t most = *std::max_element(load.begin(), load.end());
  return static_cast<double>(most) * threads <= 1.05 * static_cast<double>(S);
}

int64_t plan_bytes_bound(const int64_t* offsets, int64_t N, int64_t chunk_units) {
  // runs <= sum_n ceil(H_n / chunk) <= N + S / chunk; chunks, groups <= runs
  const int64_t S = offsets[N];
  const int64_t runs = checked_add(N, S / chunk_units + 1, "plan");
  const int64_t per_run = static_cast<int64_t>(sizeof(Run) + 5 * sizeof(int64_t));
  return checked_add(checked_mul(runs, per_run, "plan"), checked_mul(N + 1, 3 * sizeof(int64_t), "plan"), "plan");
}

Plan make_plan(const Layout& layout, int64_t chunk_units, int64_t group_units) {
  const int64_t N = layout.N;
  const int64_t* offsets = layout.offsets.data();
  if (chunk_units < 1 || chunk_units > kMaxChunkUnits)
    throw std::invalid_argument("chunk_units: expected an integer in [1, " + std::to_string(kMaxChunkUnits) +
                                "], got " + std::to_string(chunk_units));
  if (group_units < 1 || group_units > kMaxGroupUnits)
    throw std::invalid_argument("group_units: expected an integer in [1, 2^40], got " + std::to_string(group_units));
  check_fits(plan_bytes_bound(offsets, N, chunk_units), "the plan of " + std::to_string(N) + " networks");
  Plan p;
  static_cast<Layout&>(p) = layout;
  p.chunk_units = chunk_units;
  // Whole pieces of chunk_units units (counted from each network's first unit) are packed
  // greedily into chunks of at most chunk_units units.
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
  p.group_order.resize(static_cast<size_t>(p.ngroups()));
  for (int64_t g = 0; g < p.ngroups(); ++g) p.group_order[g] = g;
  std::stable_sort(p.group_order.begin(), p.group_order.end(),
                   [&p](int64_t a, int64_t b) { return p.group_units(a) > p.group_units(b); });
  return p;
}

}  // namespace pyireg
