#include "backend/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kvforge {

// Job hand-off: the caller publishes a job and bumps `generation`; workers
// spin on `generation` for a short while, then sleep on the condition
// variable. Each task index is claimed with one fetch_add on `next`.
struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> generation{0};
  std::atomic<int64_t> next{0};
  std::atomic<int> pending{0};  // workers still inside the current job
  const std::function<void(int64_t, int)>* fn = nullptr;
  int64_t n_tasks = 0;
  bool stop = false;

  void run_tasks(int thread) {
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      (*fn)(t, thread);
    }
  }

  void worker(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int spin = 0; g == seen && spin < 20000; ++spin) {
        std::this_thread::yield();
        g = generation.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || generation.load(std::memory_order_acquire) != seen; });
        if (stop) return;
        g = generation.load(std::memory_order_acquire);
      }
      seen = g;
      if (stop) return;
      run_tasks(thread);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads), impl_(new Impl) {
  for (int i = 1; i < n_threads_; ++i) impl_->workers.emplace_back([this, i] { impl_->worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
    impl_->generation.fetch_add(1, std::memory_order_acq_rel);
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) w.join();
}

void ThreadPool::parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  Impl& s = *impl_;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  s.fn = &fn;
  s.n_tasks = n_tasks;
  s.next.store(0, std::memory_order_relaxed);
  s.pending.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.generation.fetch_add(1, std::memory_order_acq_rel);
  }
  s.cv.notify_all();
  s.run_tasks(0);
  while (s.pending.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  s.fn = nullptr;
}

int default_thread_count() {
  // Count distinct (physical id, core id) pairs; fall back to the logical count.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(in, line)) {
    auto val = [&] { auto p = line.find(':'); return p == std::string::npos ? std::string() : line.substr(p + 1); };
    if (line.rfind("physical id", 0) == 0) phys = val();
    else if (line.rfind("core id", 0) == 0) cores.emplace(phys, val());
  }
  const int logical = (int)std::thread::hardware_concurrency();
  if (cores.empty()) return logical > 0 ? logical : 1;
  return std::min<int>((int)cores.size(), logical > 0 ? logical : (int)cores.size());
}

}  // namespace kvforge
