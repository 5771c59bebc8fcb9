#pragma once
// A persistent pool of worker threads. Between jobs workers spin on an
// atomic (with the CPU's pause hint) for about a millisecond, so the ~100
// small ops of a decode step hand off in well under a microsecond; only
// then do they sleep, and the caller pays for a wake-up (mutex + notify) only
// when someone actually sleeps. The caller waits for the job's tasks, not
// for the workers: on a busy machine a descheduled worker costs nothing
// unless it holds a task. No threads are created per op.
#include <cstdint>
#include <memory>
#include <type_traits>

namespace kvforge {

struct OpTimer;

class ThreadPool {
 public:
  // n_threads counts the calling thread, which always takes part in the work.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // With a timer (null: off), every job's hand-off and the caller's wait
  // for the other threads' tasks are recorded as Op::PoolWait.
  void set_timer(OpTimer* t) { timer_ = t; }

  // Calls fn(task, thread_index) for every task in [0, n_tasks). Tasks are
  // claimed from a shared counter, so uneven tasks balance out. Blocks until
  // all are done. Not re-entrant: fn must not call parallel_for.
  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run(n_tasks, [](const void* f, int64_t task, int thread) { (*(Fn*)f)(task, thread); }, (const void*)&fn);
  }

 private:
  using Trampoline = void (*)(const void* fn, int64_t task, int thread);
  void run(int64_t n_tasks, Trampoline call, const void* fn);

  struct Impl;
  int n_threads_;
  std::unique_ptr<Impl> impl_;
  OpTimer* timer_ = nullptr;
};

// Number of physical cores (hyper-threads share a core's bandwidth and
// vector units, so decode gains nothing from them).
int default_thread_count();

}  // namespace kvforge
