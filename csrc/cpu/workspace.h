// Scratch memory of the kernels. A Workspace is grown on demand and then reused, so that after
// the first call of a given batch size no kernel allocates. Workspaces are never shared between
// concurrent calls: each call leases one from its engine's pool and gives it back, so two
// threads using one model never write the same scratch.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pyireg {

template <class T>
struct Workspace {
  std::vector<T> XT, Xp, AT, dZ, slots, outs, thread_scratch;
  std::vector<double> dXT;              // the input gradient, accumulated in double across chunks of units
  std::atomic<int64_t> allocations{0};  // how many times a buffer had to grow
  std::atomic<int64_t> bytes{0};        // bytes held

  // Make v hold at least n elements (growing only; counted).
  template <class E>
  void grow(std::vector<E>& v, size_t n) {
    if (v.size() >= n) return;
    const size_t before = v.capacity();
    v.resize(n);
    ++allocations;
    bytes += static_cast<int64_t>((v.capacity() - before) * sizeof(E));
  }
};

template <class T>
class WorkspacePool {
 public:
  // A workspace for the duration of one call, returned to the pool on destruction.
  class Lease {
   public:
    Lease(WorkspacePool* pool, Workspace<T>* ws) : pool_(pool), ws_(ws) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_->put(ws_); }
    Workspace<T>& operator*() const { return *ws_; }

   private:
    WorkspacePool* pool_;
    Workspace<T>* ws_;
  };

  Lease take() {
    std::lock_guard<std::mutex> g(m_);
    if (free_.empty()) {
      all_.push_back(std::make_unique<Workspace<T>>());
      return Lease(this, all_.back().get());
    }
    Workspace<T>* ws = free_.back();
    free_.pop_back();
    return Lease(this, ws);
  }

  int64_t bytes() const { return sum(&Workspace<T>::bytes); }
  int64_t allocations() const { return sum(&Workspace<T>::allocations); }
  int64_t size() const {
    std::lock_guard<std::mutex> g(m_);
    return static_cast<int64_t>(all_.size());
  }

 private:
  void put(Workspace<T>* ws) {
    std::lock_guard<std::mutex> g(m_);
    free_.push_back(ws);
  }
  int64_t sum(std::atomic<int64_t> Workspace<T>::* field) const {
    std::lock_guard<std::mutex> g(m_);
    int64_t s = 0;
    for (const auto& w : all_) s += ((*w).*field).load();
    return s;
  }

  mutable std::mutex m_;
  std::vector<std::unique_ptr<Workspace<T>>> all_;
  std::vector<Workspace<T>*> free_;
};

}  // namespace pyireg
