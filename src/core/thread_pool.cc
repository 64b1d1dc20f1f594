// ThreadPool implementation: chunks are claimed from a shared counter under a mutex.
#include "core/thread_pool.h"

#include <algorithm>

namespace quantkit {

namespace {
thread_local bool tls_in_pool_worker = false;
}

ThreadPool::ThreadPool(int threads) {
  num_threads_ = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop() {
  tls_in_pool_worker = true;
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_work_.wait(lock, [&] { return stop_ || (job_ && job_id_ != seen); });
    if (stop_) return;
    seen = job_id_;
    while (job_ && job_next_ < job_n_) {
      const int64_t begin = job_next_;
      const int64_t end = std::min(job_n_, begin + job_chunk_);
      job_next_ = end;
      ++job_pending_;
      auto* fn = job_;
      lock.unlock();
      (*fn)(begin, end);
      lock.lock();
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
  const int64_t chunk = std::max(min_chunk, (n + num_threads_ - 1) / num_threads_);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  job_next_ = 0;
  job_pending_ = 0;
  ++job_id_;
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
  cv_done_.wait(lock, [&] { return job_pending_ == 0; });
  job_ = nullptr;
  tls_in_pool_worker = false;
}

}  // namespace quantkit
