// The measuring instruments: statistics of kvforge bench and the bandwidth probe.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "backend/bandwidth.h"
#include "backend/cpu_features.h"
#include "eval/bench.h"
#include "simd_levels.h"

namespace kvforge {
namespace {

TEST(Bench, MeanAndSampleStddev) {
  EXPECT_DOUBLE_EQ(mean_of({}), 0);
  EXPECT_DOUBLE_EQ(stddev_of({5}), 0);  // one sample: no spread (as llama-bench)
  EXPECT_DOUBLE_EQ(mean_of({1, 2, 3, 4}), 2.5);
  EXPECT_NEAR(stddev_of({1, 2, 3, 4}), 1.2909944487358056, 1e-12);  // n-1 denominator
}

TEST(Bandwidth, StreamReadSeesEveryByte) {
  // Every SIMD level folds the same bytes to the same value, and changing
  // any 8-byte word changes it (so no load can be skipped).
  const size_t n = 64 * 1024 + 256;
  std::vector<uint64_t> buf(n / 8 + 8);
  uint8_t* p = (uint8_t*)(((uintptr_t)buf.data() + 63) & ~(uintptr_t)63);
  for (size_t i = 0; i < n / 8; ++i) ((uint64_t*)p)[i] = i * 0x9E3779B97F4A7C15ull;
  const uint64_t ref = [&] {
    ScopedSimdLevel at(SimdLevel::Scalar);
    return stream_read(p, n);
  }();
  EXPECT_EQ(stream_read(p, n), ref);
  for (size_t w : {size_t(0), size_t(7), n / 8 - 1}) {
    ((uint64_t*)p)[w] ^= 1;
    EXPECT_NE(stream_read(p, n), ref) << "word " << w;
    ((uint64_t*)p)[w] ^= 1;
  }
}

TEST(Bandwidth, ProbeReportsAPositiveRate) {
  BandwidthParams bp;
  bp.n_threads = 2;
  bp.total_bytes = 8 << 20;
  bp.passes = 2;
  const BandwidthResult r = measure_read_bandwidth(bp);
  EXPECT_EQ(r.n_threads, 2);
  EXPECT_EQ(r.total_bytes, 8u << 20);
  EXPECT_GT(r.gbs, 0);
  EXPECT_GE(r.gbs, r.mean_gbs);
}

}  // namespace
}  // namespace kvforge
