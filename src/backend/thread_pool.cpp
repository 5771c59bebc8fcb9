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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVFORGE_PAUSE() _mm_pause()
#else
#define KVFORGE_PAUSE() std::this_thread::yield()
#endif

namespace kvforge {

namespace {
// ~1-2 ms of pause-spinning before a worker goes to sleep: longer than the
// gaps between the ops of one token, shorter than a human-visible idle.
constexpr int kSpinBeforeSleep = 1 << 15;
}  // namespace

// Job hand-off: the caller publishes (call, fn, n_tasks), resets `next` and
// `pending`, then bumps `generation` (release). Workers spin on `generation`,
// then sleep on the condition variable after announcing it in `sleeping`;
// generation and sleeping are both seq_cst so that either the caller sees a
// sleeper (and notifies under the mutex) or the sleeper sees the new job.
// Each task index is claimed with one fetch_add on `next`.
struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv;
  alignas(64) std::atomic<uint64_t> generation{0};
  alignas(64) std::atomic<int64_t> next{0};
  alignas(64) std::atomic<int> pending{0};  // workers still inside the current job
  alignas(64) std::atomic<int> sleeping{0};
  Trampoline call = nullptr;
  const void* fn = nullptr;
  int64_t n_tasks = 0;
  bool stop = false;

  void run_tasks(int thread) {
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      call(fn, t, thread);
    }
  }

  void worker(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int spin = 0; g == seen && spin < kSpinBeforeSleep; ++spin) {
        KVFORGE_PAUSE();
        g = generation.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mu);
        sleeping.fetch_add(1);
        cv.wait(lock, [&] { return stop || generation.load() != seen; });
        sleeping.fetch_sub(1);
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
    impl_->generation.fetch_add(1);
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) w.join();
}

void ThreadPool::run(int64_t n_tasks, Trampoline call, const void* fn) {
  if (n_tasks <= 0) return;
  Impl& s = *impl_;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) call(fn, t, 0);
    return;
  }
  s.call = call;
  s.fn = fn;
  s.n_tasks = n_tasks;
  s.next.store(0, std::memory_order_relaxed);
  s.pending.store(n_threads_ - 1, std::memory_order_relaxed);
  s.generation.fetch_add(1);  // seq_cst: publishes the job, ordered before the load below
  if (s.sleeping.load() > 0) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.cv.notify_all();
  }
  s.run_tasks(0);
  for (int spin = 0; s.pending.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinBeforeSleep) KVFORGE_PAUSE();
    else std::this_thread::yield();  // a worker was descheduled: let it run
  }
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
