// The emulation of the CUDA execution model (emu.h): the per-block scheduler with its barrier,
// collective and divergence rules, shared memory, and the launch over CPU threads. The fibers
// (stacks, the context switch, the sanitizers' fiber annotations) are in fiber.h.
//
// Under ThreadSanitizer the fiber switches do not synchronize; only barriers and collectives do
// (release before waiting, acquire after), so TSan reports a race between two threads of one
// block that no barrier orders.
#include "cuda/emu/emu.h"
#include "cuda/emu/fiber.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace pyireg {
namespace emu {

thread_local Thread* g_thread = nullptr;

namespace {

std::atomic<int> g_schedule{0};
std::atomic<uint64_t> g_seed{0};
std::atomic<int> g_threads{1};
std::atomic<uint64_t> g_launches{0};

enum class St : int { ready, barrier, coll, done };

struct TState {
  Thread t;  // first: g_thread points here
  Fiber f;
  St st = St::ready;
  int line = 0;
  Coll kind = Coll::sync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32, pred = 0;
  size_t shared_next = 0;
};

struct Run : Block {
  const char* name = "";
  const std::function<void()>* body = nullptr;
  std::vector<TState> th;
  unsigned n = 0;
  std::vector<void*> shared;
  std::vector<size_t> shared_bytes;
  size_t shared_total = 0;
  void* dyn = nullptr;
  size_t dyn_bytes = 0;
  bool failed = false;
  std::string error;
  Fiber sched;
  // addresses of TSan's release/acquire pairs: 0 the launch, 1 thread exits, 2 the barrier, 3 + w
  // warp w's collectives (w < 32: 1,024 threads)
  char tsan_token[35];
};

thread_local Run* g_run = nullptr;
thread_local TState* g_cur = nullptr;

std::string where(const Run& r, const TState* t) {
  std::ostringstream o;
  o << "kernel " << r.name << ", block (" << r.bid.x << ", " << r.bid.y << ", " << r.bid.z << ")";
  if (t) o << ", thread (" << t->t.tid.x << ", " << t->t.tid.y << ", " << t->t.tid.z << ")";
  return o.str();
}

// (callers hold the bookkeeping ignore)
void wait_here(TState* t, const void* token) {
  Run* r = g_run;
  tsan_release(token);
  jump(t->f, r->sched, false);
  tsan_acquire(token);
}

[[noreturn]] void fiber_entry() {
  Run* r;
  TState* t;
  {
    PYIREG_EMU_BOOKKEEPING;
    r = g_run;
    t = g_cur;
#if defined(PYIREG_EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &r->sched.bottom, &r->sched.asan_size);
#endif
    tsan_acquire(r->tsan_token);  // the launch's writes happen before the kernel
  }
  (*r->body)();
  PYIREG_EMU_BOOKKEEPING_BEGIN();
  t->st = St::done;
  tsan_release(r->tsan_token + 1);
  jump(t->f, r->sched, true);
  std::abort();  // a finished fiber is never resumed
}

#if !defined(PYIREG_EMU_ASM_SWITCH)
void fiber_entry_uc() { fiber_entry(); }
#endif

// ---------------------------------------------------------------- the scheduler
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

const char* coll_name(Coll k) {
  switch (k) {
    case Coll::sync: return "__syncwarp";
    case Coll::idx: return "__shfl_sync";
    case Coll::up: return "__shfl_up_sync";
    case Coll::down: return "__shfl_down_sync";
    case Coll::bxor: return "__shfl_xor_sync";
    case Coll::ballot: return "__ballot_sync";
    case Coll::any: return "__any_sync";
    case Coll::all: return "__all_sync";
  }
  return "?";
}

[[noreturn]] void raise_at(Run& r, const TState* t, const std::string& what) { throw Error(where(r, t) + ": " + what); }

// Completes the collectives whose every named lane has arrived; true if any was.
bool release_collectives(Run& r) {
  bool progressed = false;
  for (unsigned i = 0; i < r.n; ++i) {
    TState& t = r.th[i];
    if (t.st != St::coll) continue;
    const unsigned base = t.t.warp * 32;
    bool all_here = true;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1u)) continue;
      const TState& o = r.th[base + l];
      if (o.st == St::done)
        raise_at(r, &t,
                 std::string(coll_name(t.kind)) + " (line " + std::to_string(t.line) + ") names lane " +
                     std::to_string(l) + " in its mask, which has exited (the mask is not the live lanes)");
      if (o.st != St::coll) all_here = false;
    }
    if (!all_here) continue;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1u)) continue;
      const TState& o = r.th[base + l];
      if (o.mask != t.mask || o.kind != t.kind || o.width != t.width)
        raise_at(
            r, &o,
            std::string(coll_name(o.kind)) + " (line " + std::to_string(o.line) + ", mask 0x" +
                [](unsigned m) {
                  char b[16];
                  std::snprintf(b, sizeof b, "%08x", m);
                  return std::string(b);
                }(o.mask) +
                ") meets " + coll_name(t.kind) + " (line " + std::to_string(t.line) +
                ") of another lane: mismatched warp collectives");
    }
    uint64_t ballot = 0;
    for (unsigned l = 0; l < 32; ++l)
      if ((t.mask >> l & 1u) && r.th[base + l].value) ballot |= uint64_t(1) << l;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1u)) continue;
      TState& o = r.th[base + l];
      const int w = o.width;
      const int seg = static_cast<int>(l) & ~(w - 1);
      int src = -1;
      switch (o.kind) {
        case Coll::sync: o.result = 0; break;
        case Coll::ballot: o.result = ballot; break;
        case Coll::any: o.result = ballot != 0; break;
        case Coll::all: o.result = ballot == (t.mask & 0xffffffffu); break;
        case Coll::idx: src = (o.arg & (w - 1)) + seg; break;
        case Coll::up:
          src = static_cast<int>(l) - o.arg >= seg ? static_cast<int>(l) - o.arg : static_cast<int>(l);
          break;
        case Coll::down:
          src = static_cast<int>(l) + o.arg < seg + w ? static_cast<int>(l) + o.arg : static_cast<int>(l);
          break;
        case Coll::bxor:
          src = (static_cast<int>(l) ^ o.arg) < seg + w ? static_cast<int>(l) ^ o.arg : static_cast<int>(l);
          break;
      }
      if (src >= 0)  // a lane outside the mask gives an undefined value on the GPU: all-ones bits (NaN)
        o.result = (src < 32 && (t.mask >> src & 1u)) ? r.th[base + src].value : ~uint64_t(0);
    }
    for (unsigned l = 0; l < 32; ++l)
      if (t.mask >> l & 1u) r.th[base + l].st = St::ready;
    progressed = true;
  }
  return progressed;
}

// Releases the block barrier if every live thread waits at it; raises on divergence.
bool release_barrier(Run& r) {
  unsigned live = 0, waiting = 0;
  const TState* first = nullptr;
  const TState* exited = nullptr;
  for (unsigned i = 0; i < r.n; ++i) {
    const TState& t = r.th[i];
    if (t.st == St::done) {
      if (!exited) exited = &t;
      continue;
    }
    ++live;
    if (t.st == St::barrier) {
      ++waiting;
      if (!first) first = &t;
    }
  }
  if (waiting == 0 || waiting != live) return false;
  if (exited)
    raise_at(r, exited,
             "exited while " + std::to_string(waiting) + " threads of its block wait at __syncthreads (line " +
                 std::to_string(first->line) + "): barrier divergence (an early return before a barrier?)");
  int count = 0;
  for (unsigned i = 0; i < r.n; ++i) {
    const TState& t = r.th[i];
    if (t.line != first->line)
      raise_at(r, &t,
               "waits at __syncthreads (line " + std::to_string(t.line) + ") while thread (" +
                   std::to_string(first->t.tid.x) + ", " + std::to_string(first->t.tid.y) + ", " +
                   std::to_string(first->t.tid.z) + ") waits at line " + std::to_string(first->line) +
                   ": barrier divergence");
    count += t.pred;
  }
  for (unsigned i = 0; i < r.n; ++i) {
    r.th[i].result = static_cast<uint64_t>(count);
    r.th[i].st = St::ready;
  }
  return true;
}

[[noreturn]] void raise_deadlock(Run& r) {
  std::ostringstream o;
  o << "deadlock: no thread can go on (";
  int shown = 0;
  for (unsigned i = 0; i < r.n && shown < 4; ++i) {
    const TState& t = r.th[i];
    if (t.st == St::done) continue;
    if (shown++) o << "; ";
    o << "thread " << t.t.linear << " waits at "
      << (t.st == St::barrier ? std::string("__syncthreads") : std::string(coll_name(t.kind))) << " (line " << t.line
      << ")";
  }
  o << ")";
  raise_at(r, nullptr, o.str());
}

void resume(Run& r, TState& t) {
  g_cur = &t;
  g_thread = &t.t;
  jump(r.sched, t.f, false);
  g_cur = nullptr;
  g_thread = nullptr;
}

void run_block(Run& r, uint64_t block_linear) {
  PYIREG_EMU_BOOKKEEPING;  // the scheduler's context runs no kernel code
  struct Cleanup {
    Run& r;
    ~Cleanup() {
      // every fiber released a token when it last waited, finished or failed: acquiring them all
      // orders its accesses (to the launch's arguments too) before the block's memory is freed,
      // also when the block raised and some fibers are never resumed
      for (size_t i = 1; i < sizeof r.tsan_token; ++i) tsan_acquire(r.tsan_token + i);
      for (auto& t : r.th) free_fiber(t.f);
      for (void* p : r.shared) std::free(p);
      std::free(r.dyn);
      g_run = nullptr;
    }
  } cleanup{r};
  const unsigned bx = r.bdim.x, by = r.bdim.y;
  r.th.resize(r.n);
  for (unsigned i = 0; i < r.n; ++i) {
    TState& t = r.th[i];
    t.t.tid = uint3{i % bx, (i / bx) % by, i / (bx * by)};
    t.t.linear = i;
    t.t.lane = i % 32;
    t.t.warp = i / 32;
    t.t.block = &r;
#if defined(PYIREG_EMU_ASM_SWITCH)
    make_fiber(t.f, &fiber_entry);
#else
    make_fiber(t.f, &fiber_entry_uc);
#endif
  }
  if (r.dyn_bytes) {
    r.dyn = std::malloc(r.dyn_bytes);
    std::memset(r.dyn, 0xFF, r.dyn_bytes);
  }
#if defined(PYIREG_EMU_TSAN)
  r.sched.tsan = __tsan_get_current_fiber();
#endif
  g_run = &r;
  tsan_release(r.tsan_token);
  const Schedule sch = static_cast<Schedule>(g_schedule.load());
  uint64_t rng = g_seed.load() * 0x2545F4914F6CDD1Dull + block_linear;
  std::vector<unsigned> order;
  order.reserve(r.n);
  for (;;) {
    order.clear();
    for (unsigned i = 0; i < r.n; ++i)
      if (r.th[i].st == St::ready) order.push_back(i);
    if (order.empty()) {
      bool any_live = false;
      for (auto& t : r.th) any_live |= t.st != St::done;
      if (!any_live) break;
      const bool c = release_collectives(r);
      const bool b = release_barrier(r);
      if (!c && !b) raise_deadlock(r);
      continue;
    }
    if (sch == Schedule::reverse) std::reverse(order.begin(), order.end());
    if (sch == Schedule::random)
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[splitmix(rng) % i]);
    for (unsigned i : order) {
      resume(r, r.th[i]);
      if (r.failed) throw Error(r.error);
    }
  }
  tsan_acquire(r.tsan_token + 1);
}

}  // namespace

// ---------------------------------------------------------------- the API of emu.h
void set_schedule(Schedule s, uint64_t seed) {
  g_schedule = static_cast<int>(s);
  g_seed = seed;
}
Schedule schedule() { return static_cast<Schedule>(g_schedule.load()); }
uint64_t schedule_seed() { return g_seed.load(); }
void set_threads(int n) {
  if (n < 1 || n > 64) throw std::invalid_argument("threads: expected 1 .. 64, got " + std::to_string(n));
  g_threads = n;
}
int threads() { return g_threads.load(); }
uint64_t launches() { return g_launches.load(); }

namespace {
// fail() with the bookkeeping ignore already held by the caller (TSan builds).
[[noreturn]] void fail_held(const std::string& what) {
  Run* r = g_run;
  TState* t = g_cur;
  r->failed = true;
  r->error = where(*r, t) + ": " + what;
  tsan_release(r->tsan_token + 1);
  t->st = St::done;
  jump(t->f, r->sched, true);
  std::abort();
}
}  // namespace

[[noreturn]] void fail(const std::string& what) {
  if (!g_run || !g_cur) throw Error(what);
  PYIREG_EMU_BOOKKEEPING_BEGIN();
  fail_held(what);
}

void syncthreads(int line) { (void)syncthreads_count(0, line); }

int syncthreads_count(int pred, int line) {
  PYIREG_EMU_BOOKKEEPING;
  TState* t = g_cur;
  if (!t) throw Error("__syncthreads outside a kernel");
  t->st = St::barrier;
  t->line = line;
  t->pred = pred;
  wait_here(t, g_run->tsan_token + 2);
  return static_cast<int>(t->result);
}

uint64_t collective(Coll kind, unsigned mask, uint64_t value, int arg, int width, int line) {
  PYIREG_EMU_BOOKKEEPING;
  TState* t = g_cur;
  Run* r = g_run;
  if (!t) throw Error("warp collective outside a kernel");
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail_held(std::string(coll_name(kind)) + " (line " + std::to_string(line) + "): width " + std::to_string(width) +
              " is not a power of two in [1, 32]");
  if (!(mask >> t->t.lane & 1u))
    fail_held(std::string(coll_name(kind)) + " (line " + std::to_string(line) + "): the calling lane " +
              std::to_string(t->t.lane) + " is not in its mask (the mask is not the live lanes)");
  const unsigned base = t->t.warp * 32;
  for (unsigned l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && base + l >= r->n)
      fail_held(std::string(coll_name(kind)) + " (line " + std::to_string(line) + "): its mask names lane " +
                std::to_string(l) + ", which does not exist in a block of " + std::to_string(r->n) +
                " threads (the mask is not the live lanes)");
  t->st = St::coll;
  t->kind = kind;
  t->mask = mask;
  t->value = value;
  t->arg = arg;
  t->width = width;
  t->line = line;
  wait_here(t, r->tsan_token + 3 + t->t.warp % 32);
  return t->result;
}

void* shared_array(size_t bytes, size_t align, int line) {
  PYIREG_EMU_BOOKKEEPING;
  TState* t = g_cur;
  Run* r = g_run;
  if (!t) throw Error("__shared__ outside a kernel");
  const size_t i = t->shared_next++;
  if (i < r->shared.size()) {
    if (r->shared_bytes[i] != bytes)
      fail_held("__shared__ declaration (line " + std::to_string(line) + ") of " + std::to_string(bytes) +
                " bytes differs from other threads' (" + std::to_string(r->shared_bytes[i]) + ")");
    return r->shared[i];
  }
  r->shared_total += bytes;
  if (r->shared_total + r->dyn_bytes > kMaxSharedBytes)
    fail_held("shared memory: " + std::to_string(r->shared_total) + " static + " + std::to_string(r->dyn_bytes) +
              " dynamic bytes per block exceed the " + std::to_string(kMaxSharedBytes) + " a launch may use");
  void* p = std::malloc(std::max<size_t>(bytes, 1));
  if (!p || reinterpret_cast<uintptr_t>(p) % align) fail_held("shared memory: allocation failed");
  std::memset(p, 0xFF, bytes);  // NaN in every float and double
  r->shared.push_back(p);
  r->shared_bytes.push_back(bytes);
  return p;
}

void* dynamic_shared() {
  if (!g_run) throw Error("extern __shared__ outside a kernel");
  return g_run->dyn;
}

void launch(const char* name, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream, std::function<void()> body) {
  (void)stream;  // every emulated operation is synchronous
  g_launches.fetch_add(1);
  const std::string k = std::string("kernel ") + name + ": ";
  const uint64_t nt = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    throw Error(k + "launch with an empty grid or block (invalid configuration)");
  if (nt > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > kMaxBlockDimZ)
    throw Error(k + "launch with " + std::to_string(nt) + " threads per block (" + std::to_string(block.x) + " x " +
                std::to_string(block.y) + " x " + std::to_string(block.z) + "); at most 1024, z at most 64");
  if (grid.x > 2147483647u || grid.y > kMaxGridDimYZ || grid.z > kMaxGridDimYZ)
    throw Error(k + "grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " + std::to_string(grid.z) +
                ") exceeds the limits (2^31 - 1, 65535, 65535)");
  if (shmem > kMaxSharedBytes)
    throw Error(k + "launch with " + std::to_string(shmem) + " bytes of dynamic shared memory (at most " +
                std::to_string(kMaxSharedBytes) + ")");
  const uint64_t nb = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> order(nb);
  for (uint64_t i = 0; i < nb; ++i) order[i] = i;
  const Schedule sch = schedule();
  if (sch == Schedule::reverse) std::reverse(order.begin(), order.end());
  if (sch == Schedule::random) {
    uint64_t rng = schedule_seed() ^ 0x5851F42D4C957F2Dull;
    for (uint64_t i = nb; i > 1; --i) std::swap(order[i - 1], order[splitmix(rng) % i]);
  }
  auto run_one = [&](uint64_t b) {
    PYIREG_EMU_BOOKKEEPING;  // before r: the block's bookkeeping is freed under it
    Run r;
    r.name = name;
    r.body = &body;
    r.bid = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                  static_cast<unsigned>(b / (uint64_t(grid.x) * grid.y))};
    r.bdim = block;
    r.gdim = grid;
    r.n = static_cast<unsigned>(nt);
    r.dyn_bytes = shmem;
    run_block(r, b);
  };
  const int workers = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(threads()), nb));
  if (workers <= 1) {
    for (uint64_t i = 0; i < nb; ++i) run_one(order[i]);
    return;
  }
  std::atomic<uint64_t> next{0};
  std::mutex err_lock;
  uint64_t err_at = UINT64_MAX;
  std::string err;
  auto work = [&]() {
    for (;;) {
      const uint64_t i = next.fetch_add(1);
      if (i >= nb) return;
      try {
        run_one(order[i]);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(err_lock);
        if (i < err_at) {
          err_at = i;
          err = e.what();
        }
        next = nb;  // stop handing out blocks
      }
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (err_at != UINT64_MAX) throw Error(err);
}

}  // namespace emu
}  // namespace pyireg
