// BufferPool: the runtime's allocator. Buffers released by tensors come back to a free list and are
// reused by later allocations of similar size; this is how memory is recycled by liveness (the
// executor drops each value after its last consumer, which returns its buffer here).
// Also enforces the session's memory limit. Thread-safe.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>
#include <memory>
#include <mutex>

#include "quantkit/tensor.h"

namespace quantkit::rt {

// The memory limit of sessions created without one (SessionOptions::max_memory_bytes == 0): half
// of physical memory, unless the process chose another (the CLI's --max-memory). Thread-safe.
uint64_t DefaultMemoryLimit();
void SetDefaultMemoryLimit(uint64_t bytes);  // 0 restores half of physical memory

// Refuses any single buffer above `max_bytes` (nullptr, which Tensor::Create reports naming the
// tensor); otherwise the default allocator. For constant folding, whose results above a size are
// not kept anyway: a huge constant expression is then refused, not computed and thrown away.
class CappedAllocator final : public Allocator {
 public:
  explicit CappedAllocator(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<Buffer> Allocate(size_t bytes) override {
    return bytes > max_bytes_ ? nullptr : DefaultAllocator()->Allocate(bytes);
  }

 private:
  uint64_t max_bytes_;
};

class BufferPool final : public Allocator {
 public:
  explicit BufferPool(uint64_t max_bytes) : state_(std::make_shared<State>()) { state_->max_bytes = max_bytes; }
  std::shared_ptr<Buffer> Allocate(size_t bytes) override;
  uint64_t peak_bytes() const;
  uint64_t live_bytes() const;
  uint64_t max_bytes() const { return state_->max_bytes; }
  // Last allocation refused by the limit (for messages).
  uint64_t last_refused_bytes() const;

 private:
  struct State {
    std::mutex mu;
    // (capacity, buffer), sorted by capacity: a vector, so releasing and reusing a buffer does
    // not allocate a map node each time (a few dozen entries).
    std::vector<std::pair<size_t, Buffer*>> free;
    uint64_t held_bytes = 0;               // live + free
    uint64_t live_bytes = 0;
    uint64_t peak_live = 0;
    uint64_t max_bytes = 0;
    uint64_t last_refused = 0;
    ~State();
  };
  std::shared_ptr<State> state_;
};

}  // namespace quantkit::rt
