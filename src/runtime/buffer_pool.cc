// BufferPool: best-fit reuse of released buffers, bounded by max_bytes.
#include "runtime/buffer_pool.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <new>

namespace quantkit::rt {

namespace {
std::atomic<uint64_t> g_default_limit{0};  // 0: half of physical memory

uint64_t HalfOfPhysicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return uint64_t{8} << 30;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 2;
}
}  // namespace

uint64_t DefaultMemoryLimit() {
  const uint64_t set = g_default_limit.load(std::memory_order_relaxed);
  return set ? set : HalfOfPhysicalMemory();
}

void SetDefaultMemoryLimit(uint64_t bytes) { g_default_limit.store(bytes, std::memory_order_relaxed); }

BufferPool::State::~State() {
  for (auto& kv : free) {
    ::operator delete(kv.second->data, std::align_val_t(64));
    delete kv.second;
  }
}

std::shared_ptr<Buffer> BufferPool::Allocate(size_t bytes) {
  const size_t cap = (bytes + 63) / 64 * 64;
  std::shared_ptr<State> st = state_;
  Buffer* buf = nullptr;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    // Best fit, but do not hand a huge buffer to a tiny tensor (waste > 2x).
    auto it = std::lower_bound(st->free.begin(), st->free.end(), cap,
                               [](const std::pair<size_t, Buffer*>& e, size_t c) { return e.first < c; });
    if (it != st->free.end() && it->first <= 2 * cap + 4096) {
      buf = it->second;
      st->free.erase(it);
    } else {
      // Drop free buffers if needed to stay under the limit.
      while (st->max_bytes && st->held_bytes + cap > st->max_bytes && !st->free.empty()) {
        auto victim = std::prev(st->free.end());
        st->held_bytes -= victim->first;
        ::operator delete(victim->second->data, std::align_val_t(64));
        delete victim->second;
        st->free.erase(victim);
      }
      if (st->max_bytes && st->held_bytes + cap > st->max_bytes) {
        st->last_refused = cap;
        return nullptr;
      }
      void* p = cap ? ::operator new(cap, std::align_val_t(64), std::nothrow) : nullptr;
      if (cap && !p) return nullptr;
      buf = new Buffer{p, cap};
      st->held_bytes += cap;
    }
    st->live_bytes += buf->capacity;
    if (st->live_bytes > st->peak_live) st->peak_live = st->live_bytes;
  }
  return std::shared_ptr<Buffer>(buf, [st](Buffer* b) {
    std::lock_guard<std::mutex> lock(st->mu);
    st->live_bytes -= b->capacity;
    const std::pair<size_t, Buffer*> entry(b->capacity, b);
    st->free.insert(std::upper_bound(st->free.begin(), st->free.end(), entry,
                                     [](const auto& x, const auto& y) { return x.first < y.first; }),
                    entry);
  });
}

uint64_t BufferPool::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak_live;
}
uint64_t BufferPool::live_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->live_bytes;
}
uint64_t BufferPool::last_refused_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->last_refused;
}

}  // namespace quantkit::rt
