// A fixed pool of worker threads with a blocking ParallelFor. The calling thread takes part, and a
// ParallelFor issued from inside a worker runs inline (no nested oversubscription, no deadlock).
// Idle workers spin briefly for the next job before they sleep.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace quantkit {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  // Calls fn(begin, end) over [0, n) split into about 4 * `num_threads` contiguous chunks of at
  // least `min_chunk` items, each claimed by the next free thread. Returns when all are done.
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  // Current job (one at a time; concurrent callers queue on job_mu_).
  std::mutex job_mu_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 0, job_next_ = 0;
  int job_pending_ = 0;
  uint64_t job_id_ = 0;
  bool stop_ = false;
  // Mirrors read without the mutex while spinning: a worker polls for the next job, the caller
  // for its helpers to finish, a short while before sleeping on the condition variables (an
  // inference issues hundreds of ParallelFor calls; a futex wake-up each costs tens of
  // microseconds on a VM).
  std::atomic<uint64_t> published_id_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace quantkit
