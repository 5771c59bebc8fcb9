#include <gtest/gtest.h>

#include <atomic>
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

TEST(ThreadPool, DefaultThreadCountIsPositive) { EXPECT_GE(default_thread_count(), 1); }
