// The fibers of the CUDA emulation (included by emu.cpp only): a stack pool with guard pages, the
// x86-64 context switch (six callee-saved registers and the stack pointer: no system call, where
// swapcontext saves the signal mask with one on every switch; ucontext on other machines),
// and the AddressSanitizer and ThreadSanitizer fiber annotations around every switch. Under
// TSan the switches do not synchronize; emu.cpp's barriers and collectives do (release before
// waiting, acquire after), and the emulator's own bookkeeping is hidden from TSan.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/emu/emu.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PYIREG_EMU_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define PYIREG_EMU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PYIREG_EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define PYIREG_EMU_TSAN 1
#endif
#if defined(PYIREG_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(PYIREG_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
extern "C" void AnnotateIgnoreReadsBegin(const char* f, int l);
extern "C" void AnnotateIgnoreReadsEnd(const char* f, int l);
extern "C" void AnnotateIgnoreWritesBegin(const char* f, int l);
extern "C" void AnnotateIgnoreWritesEnd(const char* f, int l);
// The emulator's own bookkeeping (fiber states, stacks, the scheduler) is ordered by the fiber
// switches themselves, which TSan is told not to treat as synchronization: it is hidden from
// TSan, so that only the kernels' memory accesses are checked.
struct TsanIgnore {
  TsanIgnore() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~TsanIgnore() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
};
#define PYIREG_EMU_BOOKKEEPING TsanIgnore pyireg_tsan_ignore_
// For a fiber that leaves for good (a guard's destructor would never run): jump() ends it.
#define PYIREG_EMU_BOOKKEEPING_BEGIN()             \
  do {                                             \
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);  \
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__); \
  } while (0)
#else
#define PYIREG_EMU_BOOKKEEPING
#define PYIREG_EMU_BOOKKEEPING_BEGIN() \
  do {                                 \
  } while (0)
#endif

#if defined(__x86_64__) && !defined(PYIREG_EMU_UCONTEXT)
#define PYIREG_EMU_ASM_SWITCH 1
// void pyireg_emu_switch(void** save_sp, void* to_sp): saves the callee-saved registers on the
// current stack, stores its pointer in *save_sp, and continues on to_sp's stack.
asm(R"(
  .text
  .p2align 4
  .globl pyireg_emu_switch
  .hidden pyireg_emu_switch
  .type pyireg_emu_switch, @function
pyireg_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pyireg_emu_switch, .-pyireg_emu_switch
)");
extern "C" void pyireg_emu_switch(void** save_sp, void* to_sp);
#else
#include <ucontext.h>
#endif

namespace pyireg {
namespace emu {
namespace {

#if defined(PYIREG_EMU_ASAN)
constexpr size_t kStackBytes = 1 << 20;  // ASan's redzones make frames larger
#else
constexpr size_t kStackBytes = 256 << 10;
#endif

struct Fiber {
#if defined(PYIREG_EMU_ASM_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  char* stack = nullptr;  // lowest address of the usable stack (above the guard page)
  size_t size = 0;
#if defined(PYIREG_EMU_ASAN)
  void* fake = nullptr;
  const void* bottom = nullptr;
  size_t asan_size = 0;
#endif
#if defined(PYIREG_EMU_TSAN)
  void* tsan = nullptr;
#endif
};

// ---------------------------------------------------------------- stacks
struct StackPool {
  std::vector<char*> free;
  ~StackPool() {
    for (char* s : free) munmap(s - page(), kStackBytes + page());
  }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  char* get() {
    if (!free.empty()) {
      char* s = free.back();
      free.pop_back();
#if defined(PYIREG_EMU_ASAN)
      __asan_unpoison_memory_region(s, kStackBytes);
#endif
      return s;
    }
    void* m = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw Error("CUDA emulation: cannot map a fiber stack");
    mprotect(m, page(), PROT_NONE);  // a guard page below the stack: overflow faults, never corrupts
    return static_cast<char*>(m) + page();
  }
  void put(char* s) { free.push_back(s); }
};
thread_local StackPool g_stacks;

// ---------------------------------------------------------------- switching
// Callers hold the bookkeeping ignore (TSan builds); it is ended for the switch itself, so that
// a fiber that is never resumed (a block that raised) does not keep it, and begun again after.
void jump(Fiber& from, Fiber& to, bool from_exits) {
#if defined(PYIREG_EMU_ASAN)
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.fake, to.bottom, to.asan_size);
#else
  (void)from_exits;
#endif
#if defined(PYIREG_EMU_TSAN)
  void* to_tsan = to.tsan;
#endif
#if defined(PYIREG_EMU_ASM_SWITCH)
  void* to_sp = to.sp;
#endif
#if defined(PYIREG_EMU_TSAN)
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  __tsan_switch_to_fiber(to_tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(PYIREG_EMU_ASM_SWITCH)
  pyireg_emu_switch(&from.sp, to_sp);
#else
  swapcontext(&from.uc, &to.uc);
#endif
#if defined(PYIREG_EMU_TSAN)
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
#if defined(PYIREG_EMU_ASAN)
  __sanitizer_finish_switch_fiber(from.fake, nullptr, nullptr);
#endif
}

void tsan_release(const void* a) {
#if defined(PYIREG_EMU_TSAN)
  __tsan_release(const_cast<void*>(a));
#else
  (void)a;
#endif
}
void tsan_acquire(const void* a) {
#if defined(PYIREG_EMU_TSAN)
  __tsan_acquire(const_cast<void*>(a));
#else
  (void)a;
#endif
}

// Called by a fiber to wait (barrier or collective): back to the scheduler until released.

// A fiber that starts in entry() on a stack from the pool.
void make_fiber(Fiber& f, void (*entry)()) {
  f.stack = g_stacks.get();
  f.size = kStackBytes;
#if defined(PYIREG_EMU_ASAN)
  f.bottom = f.stack;
  f.asan_size = f.size;
  f.fake = nullptr;
#endif
#if defined(PYIREG_EMU_TSAN)
  f.tsan = __tsan_create_fiber(0);
#endif
#if defined(PYIREG_EMU_ASM_SWITCH)
  // the stack as pyireg_emu_switch leaves it: six registers, then the entry as return address,
  // then a null return address for the entry (16-byte aligned at the entry's call boundary)
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + f.size) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  f.sp = sp;
#else
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack;
  f.uc.uc_stack.ss_size = f.size;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, entry, 0);
#endif
}

void free_fiber(Fiber& f) {
  if (f.stack) g_stacks.put(f.stack);
  f.stack = nullptr;
#if defined(PYIREG_EMU_TSAN)
  if (f.tsan) __tsan_destroy_fiber(f.tsan);
  f.tsan = nullptr;
#endif
}

}  // namespace
}  // namespace emu
}  // namespace pyireg
