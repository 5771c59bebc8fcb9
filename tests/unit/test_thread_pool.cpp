#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backend/thread_pool.h"

using namespace kvforge;

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](int64_t t, int th) {
        EXPECT_GE(th, 0);
        EXPECT_LT(th, threads);
        hits[t].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "task " << i;
    }
  }
}

TEST(ThreadPool, ManySmallJobsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 2000; ++job) pool.parallel_for(4, [&](int64_t t, int) { sum += t; });
  EXPECT_EQ(sum.load(), 2000 * 6);
}

// Each thread starts on a range of its own; when one stalls in its first
// task, the others steal the rest of its range: the stalled thread waits
// (up to 5 s) for every other task to finish, which happens only if they
// were taken from its range too.
TEST(ThreadPool, OthersStealTheRangeOfAStalledThread) {
  ThreadPool pool(3);
  for (int job = 0; job < 10; ++job) {
    const int64_t n = 60;
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int64_t> finished{0};
    std::atomic<int> stalled{-1};
    bool others_finished = false;
    pool.parallel_for(n, [&](int64_t t, int th) {
      int none = -1;
      if (th != 0 && stalled.compare_exchange_strong(none, th)) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (finished.load() < n - 1 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        others_finished = finished.load() == n - 1;
      }
      hits[t].fetch_add(1);
      finished.fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i;
    if (stalled.load() > 0) EXPECT_TRUE(others_finished);
  }
}

TEST(ThreadPool, DefaultThreadCountIsPositive) { EXPECT_GE(default_thread_count(), 1); }
