// The CPU plan: how the S hidden units of a packed model (its Layout, engine/layout.h) are cut
// into work on the CPU: fixed chunks of units (the unit of parallel work), runs of one network
// inside a chunk, and groups of whole networks that a training step streams through. Raw sizes
// only.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/layout.h"

namespace pyireg {

// Hidden units [begin, end) of network `net`, all inside one chunk. `slot` is the index of the
// run's private output buffer when its network spans several runs, or -1 when the run is the
// whole network and writes the network's outputs directly.
struct Run {
  int64_t begin, end, net, slot;
};

// Chunks of at most `chunk_units` consecutive units, each a sequence of runs. Every network is
// cut into pieces of chunk_units units counted from its own first unit, so the cut depends on
// neither the thread count nor a network's neighbours: every network's result is bit-identical
// for any thread count and any packing.
// The plan is its layout (N, S, d, k, offsets) plus the cut.
struct Plan : Layout {
  int64_t chunk_units = 0;
  std::vector<int64_t> chunk_begin;    // nchunks + 1, first unit of each chunk
  std::vector<int64_t> chunk_run_ptr;  // nchunks + 1, into runs
  std::vector<Run> runs;
  std::vector<int64_t> net_run_ptr;  // N + 1, into net_runs
  std::vector<int64_t> net_runs;     // run ids of each network, in unit order
  int64_t nslots = 0;                // runs with a private output buffer
  // Groups of whole networks (consecutive chunks) of about group_units units: a training step
  // runs forward, loss and backward group by group, so a group's activations and weights are
  // still in cache when its backward and update need them, and the activation buffer holds
  // one group (max_group_units x batch) instead of every unit.
  std::vector<int64_t> group_chunk_ptr;  // ngroups + 1, into chunks
  std::vector<int64_t> group_net_ptr;    // ngroups + 1, into networks
  int64_t max_group_units = 0;
  std::vector<int64_t> group_order;  // the groups, largest first (ties: in order)
  int64_t group_units(int64_t g) const { return chunk_begin[group_chunk_ptr[g + 1]] - chunk_begin[group_chunk_ptr[g]]; }
  // Whether a training pass on `threads` threads runs whole groups on one thread each (no
  // barrier inside a step) rather than every group on all threads (a barrier after each phase
  // of each group): by groups when the groups, largest first, each to the least loaded thread,
  // load no thread with more than 5% above an even share of the units. A sweep of many
  // networks qualifies; one wide network, or a few that hold most of the units, do not.
  bool by_groups(int threads) const;
  int64_t nchunks() const { return static_cast<int64_t>(chunk_run_ptr.size()) - 1; }
  int64_t ngroups() const { return static_cast<int64_t>(group_chunk_ptr.size()) - 1; }
  int64_t bytes() const;
};

constexpr int64_t kMaxChunkUnits = int64_t(1) << 16;
constexpr int64_t kMaxGroupUnits = int64_t(1) << 40;

// Validates the options and checks the plan's own memory against the limit before building it
// (the layout is validated by make_layout). Throws std::invalid_argument or MemoryLimitError.
Plan make_plan(const Layout& layout, int64_t chunk_units, int64_t group_units);

// Upper bound of the memory make_plan would use (validated offsets).
int64_t plan_bytes_bound(const int64_t* offsets, int64_t N, int64_t chunk_units);

}  // namespace pyireg
