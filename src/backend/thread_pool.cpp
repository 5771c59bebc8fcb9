#include "backend/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "util/op_timer.h"

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

// Job hand-off. The tasks are cut into one contiguous range per thread,
// each in an atomic word of its own cache line holding (generation, end,
// next task): the caller writes the job's function and the ranges, then
// publishes the generation in `word` (release). A thread claims the tasks
// of its own range by a CAS that bumps `next` while it is below `end` (a
// line no other thread writes while it has work: no cache-line ping-pong per
// task, which cost ~2 line transfers per task of a decode step's ~150 small
// jobs), then steals from the other ranges the same way, so uneven or
// descheduled threads still balance out. A successful claim (generation
// checked in the same word) proves the job is still running, so its
// function is still the published one. Each thread adds its count of
// finished tasks to `done` once, and the caller waits for that count to
// reach n_tasks, never for workers to check in: a worker that was
// descheduled simply finds nothing left to claim when it runs again.
// Idle workers spin on the word, then sleep on the condition variable after
// announcing it in `sleeping`; the word and `sleeping` are seq_cst so that
// either the caller sees a sleeper (and notifies under the mutex) or the
// sleeper sees the new job.
namespace {
constexpr int kIdxBits = 20;  // up to 2^20 - 1 tasks per job (larger ones run in rounds)
constexpr uint64_t kIdxMask = (1u << kIdxBits) - 1;
inline uint64_t gen_of(uint64_t w) { return w >> (2 * kIdxBits); }
inline int64_t n_of(uint64_t w) { return (int64_t)((w >> kIdxBits) & kIdxMask); }
inline int64_t idx_of(uint64_t w) { return (int64_t)(w & kIdxMask); }
}  // namespace

struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv;
  alignas(64) std::atomic<uint64_t> word{0};
  alignas(64) std::atomic<int64_t> done{0};  // finished tasks of the current job
  alignas(64) std::atomic<int> sleeping{0};
  struct alignas(64) Range {
    std::atomic<uint64_t> w{0};  // (generation, end, next) of one thread's tasks
  };
  std::vector<Range> ranges;  // [n_threads]
  Trampoline call = nullptr;
  const void* fn = nullptr;
  int64_t offset = 0;  // first task of the current round
  bool stop = false;

  explicit Impl(int n_threads) : ranges(n_threads) {}

  // Claims and runs tasks of the job published as generation `gen`: its own
  // range first, then the others'.
  void run_tasks(uint64_t gen, int thread) {
    const int nt = (int)ranges.size();
    int64_t finished = 0;
    for (int k = 0; k < nt; ++k) {
      std::atomic<uint64_t>& r = ranges[(thread + k) % nt].w;
      uint64_t w = r.load(std::memory_order_acquire);
      while (gen_of(w) == gen && idx_of(w) < n_of(w)) {
        if (!r.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        call(fn, offset + idx_of(w), thread);
        ++finished;
        w = r.load(std::memory_order_acquire);
      }
    }
    if (finished > 0) done.fetch_add(finished, std::memory_order_release);
  }

  void worker(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = gen_of(word.load(std::memory_order_acquire));
      for (int spin = 0; g == seen && spin < kSpinBeforeSleep; ++spin) {
        KVFORGE_PAUSE();
        g = gen_of(word.load(std::memory_order_acquire));
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mu);
        sleeping.fetch_add(1);
        cv.wait(lock, [&] { return stop || gen_of(word.load()) != seen; });
        sleeping.fetch_sub(1);
        if (stop) return;
        g = gen_of(word.load(std::memory_order_acquire));
      }
      if (stop) return;
      seen = g;
      run_tasks(g, thread);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads), impl_(new Impl(n_threads_)) {
  for (int i = 1; i < n_threads_; ++i) impl_->workers.emplace_back([this, i] { impl_->worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
    const uint64_t g = gen_of(impl_->word.load()) + 1;
    impl_->word.store(g << (2 * kIdxBits));
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
  OpTimer* const tm = timer_;
  const int64_t t_start = tm ? OpTimer::now() : 0;
  int64_t own = 0;  // the caller's own tasks: the enclosing op's time
  for (int64_t first = 0; first < n_tasks; first += (int64_t)kIdxMask) {
    const int64_t n = std::min<int64_t>((int64_t)kIdxMask, n_tasks - first);
    s.call = call;
    s.fn = fn;
    s.offset = first;
    s.done.store(0, std::memory_order_relaxed);
    const uint64_t g = (gen_of(s.word.load(std::memory_order_relaxed)) + 1) & ((1ull << (64 - 2 * kIdxBits)) - 1);
    for (int i = 0; i < n_threads_; ++i) {  // thread i: tasks [n i / T, n (i + 1) / T)
      const uint64_t b = (uint64_t)(n * i / n_threads_), e = (uint64_t)(n * (i + 1) / n_threads_);
      s.ranges[i].w.store((g << (2 * kIdxBits)) | (e << kIdxBits) | b, std::memory_order_relaxed);
    }
    s.word.store((g << (2 * kIdxBits)) | ((uint64_t)n << kIdxBits));  // seq_cst: publish, then check sleepers
    if (s.sleeping.load() > 0) {
      std::lock_guard<std::mutex> lock(s.mu);
      s.cv.notify_all();
    }
    const int64_t t_own = tm ? OpTimer::now() : 0;
    s.run_tasks(g, 0);
    if (tm) own += OpTimer::now() - t_own;
    for (int spin = 0; s.done.load(std::memory_order_acquire) != n; ++spin) {
      if (spin < kSpinBeforeSleep) KVFORGE_PAUSE();
      else std::this_thread::yield();  // a worker holding a task was descheduled: let it run
    }
  }
  s.fn = nullptr;
  if (tm) tm->add(Op::PoolWait, OpTimer::now() - t_start - own, 0);
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
