// ThreadPool implementation: chunks are claimed from a shared counter under a mutex.
#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QK_CPU_RELAX() _mm_pause()
#else
#define QK_CPU_RELAX() ((void)0)
#endif

namespace quantkit {

namespace {
thread_local bool tls_in_pool_worker = false;
// Polls before sleeping: about 50-100 microseconds of pause instructions.
constexpr int kSpinIterations = 4000;
constexpr int64_t kChunksPerThread = 4;
}

ThreadPool::ThreadPool(int threads) {
  num_threads_ = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    stopping_.store(true, std::memory_order_release);
  }
  cv_work_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop() {
  tls_in_pool_worker = true;
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!stop_ && !(job_ && job_id_ != seen)) {
      lock.unlock();
      for (int i = 0; i < kSpinIterations; ++i) {
        if (published_id_.load(std::memory_order_acquire) != seen || stopping_.load(std::memory_order_acquire)) break;
        QK_CPU_RELAX();
      }
      lock.lock();
    }
    cv_work_.wait(lock, [&] { return stop_ || (job_ && job_id_ != seen); });
    if (stop_) return;
    seen = job_id_;
    while (job_ && job_next_ < job_n_) {
      const int64_t begin = job_next_;
      const int64_t end = std::min(job_n_, begin + job_chunk_);
      job_next_ = end;
      ++job_pending_;
      pending_.fetch_add(1, std::memory_order_relaxed);
      auto* fn = job_;
      lock.unlock();
      (*fn)(begin, end);
      lock.lock();
      pending_.fetch_sub(1, std::memory_order_release);
      if (--job_pending_ == 0 && job_next_ >= job_n_) cv_done_.notify_all();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  if (num_threads_ == 1 || tls_in_pool_worker || n <= min_chunk) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> job_lock(job_mu_);
  tls_in_pool_worker = true;  // nested ParallelFor calls from fn run inline
  // About kChunksPerThread chunks per thread, claimed as threads free up: when one core is slowed
  // (another process, a noisy VM neighbour), the others take over its remaining chunks instead of
  // waiting for its half.
  const int64_t parts = int64_t{num_threads_} * kChunksPerThread;
  const int64_t chunk = std::max(min_chunk, (n + parts - 1) / parts);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  job_next_ = 0;
  job_pending_ = 0;
  ++job_id_;
  published_id_.store(job_id_, std::memory_order_release);
  cv_work_.notify_all();
  // The caller works too.
  while (job_next_ < job_n_) {
    const int64_t begin = job_next_;
    const int64_t end = std::min(job_n_, begin + job_chunk_);
    job_next_ = end;
    ++job_pending_;
    lock.unlock();
    fn(begin, end);
    lock.lock();
    --job_pending_;
  }
  if (job_pending_ != 0) {  // helpers still at work: poll a short while, then sleep
    lock.unlock();
    for (int i = 0; i < kSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++i) QK_CPU_RELAX();
    lock.lock();
  }
  cv_done_.wait(lock, [&] { return job_pending_ == 0; });
  job_ = nullptr;
  tls_in_pool_worker = false;
}

}  // namespace quantkit
