// Row norms: close to a double-precision reference, and each row's bits
// independent of how many rows are normalised together (batch invariance:
// a decode step normalises one row per sequence, a prefill many).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/norm.h"

namespace kvforge {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng);
  return x;
}

// Lengths around the 8 partial sums (tails of 0..7) and the models' widths.
constexpr int64_t kLengths[] = {1, 7, 8, 9, 64, 100, 576, 2048};

TEST(Norm, RmsNormMatchesDoubleReference) {
  const float eps = 1e-5f;
  for (int64_t n : kLengths) {
    const int rows = 5;
    const auto x = randn((size_t)rows * n, 1, 2.0f), w = randn((size_t)n, 2, 1.0f);
    std::vector<float> y((size_t)rows * n);
    rms_norm(x.data(), w.data(), y.data(), rows, n, eps);
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += (double)x[r * n + i] * x[r * n + i];
      const double inv = 1.0 / std::sqrt(ss / (double)n + eps);
      for (int64_t i = 0; i < n; ++i) {
        const double want = x[r * n + i] * inv * w[i];
        // Two f32 roundings of the product after the scale's one: 4 eps relative.
        EXPECT_NEAR(y[r * n + i], want, 4 * 1.2e-7 * std::fabs(want) + 1e-30) << "n " << n << " row " << r;
      }
    }
  }
}

TEST(Norm, RmsNormRowBitsIndependentOfRowCount) {
  for (int64_t n : kLengths) {
    const int rows = 9;
    const auto x = randn((size_t)rows * n, 3, 3.0f), w = randn((size_t)n, 4, 1.0f);
    std::vector<float> all((size_t)rows * n), one((size_t)n), inplace = x;
    rms_norm(x.data(), w.data(), all.data(), rows, n, 1e-6f);
    rms_norm(inplace.data(), w.data(), inplace.data(), rows, n, 1e-6f);  // y == x, as the post-norms call it
    EXPECT_EQ(0, std::memcmp(all.data(), inplace.data(), all.size() * 4)) << "n " << n;
    for (int r = 0; r < rows; ++r) {
      rms_norm(&x[r * n], w.data(), one.data(), 1, n, 1e-6f);
      EXPECT_EQ(0, std::memcmp(&all[r * n], one.data(), n * 4)) << "n " << n << " row " << r;
    }
  }
}

}  // namespace
}  // namespace kvforge
