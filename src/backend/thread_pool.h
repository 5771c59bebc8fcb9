#pragma once
// A persistent pool of worker threads. Workers sleep between jobs and spin
// briefly before sleeping so that the many small ops of a decode step do not
// pay a wake-up each; there is no fork/join of new threads per op.
#include <cstdint>
#include <functional>
#include <memory>

namespace kvforge {

class ThreadPool {
 public:
  // n_threads counts the calling thread, which always takes part in the work.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(task, thread_index) for every task in [0, n_tasks). Tasks are
  // claimed from a shared counter, so uneven tasks balance out. Blocks until
  // all are done. Not re-entrant: fn must not call parallel_for.
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

 private:
  struct Impl;
  int n_threads_;
  std::unique_ptr<Impl> impl_;
};

// Number of physical cores (hyper-threads share a core's bandwidth and
// vector units, so decode gains nothing from them).
int default_thread_count();

}  // namespace kvforge
