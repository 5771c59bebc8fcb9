// Element-wise activations: the SIMD versions against double-precision
// references, and every element computed alike whatever the array length
// (batch invariance: an element's value must not depend on where it sits).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/activation.h"
#include "simd_levels.h"

namespace kvforge {
namespace {

std::vector<float> inputs(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng);
  // Saturation and special points.
  const float edge[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 40.0f, -40.0f, 100.0f, -100.0f, 5.5f, -5.5f};
  for (size_t i = 0; i < std::size(edge) && i < n; ++i) x[i] = edge[i];
  return x;
}

double gelu_d(double v) { return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
double silu_d(double v) { return v / (1.0 + std::exp(-v)); }

// A handful of f32 roundings of terms no larger than |v| (plus the 1 in
// 1 + exp): 8 eps (|v| + 1) bounds them with room.
double tol(double v) { return 8 * std::numeric_limits<float>::epsilon() * (std::fabs(v) + 1); }

TEST(Activation, GeluMatchesDoubleReferenceAtEveryLevel) {
  const auto x = inputs(1000, 1);
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    auto y = x;
    gelu_inplace(y.data(), (int64_t)y.size());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_NEAR(y[i], gelu_d(x[i]), tol(x[i])) << "x = " << x[i] << " level " << simd_level_name(simd_level());
  }
}

TEST(Activation, SwigluMatchesDoubleReferenceAtEveryLevel) {
  const auto g = inputs(1000, 2), u = inputs(1000, 3);
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    auto y = g;
    swiglu_inplace(y.data(), u.data(), (int64_t)y.size());
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_NEAR(y[i], silu_d(g[i]) * u[i], tol(g[i]) * (std::fabs(u[i]) + 1))
          << "g = " << g[i] << " level " << simd_level_name(lvl);
  }
}

TEST(Activation, ElementValueIndependentOfLength) {
  const auto x = inputs(37, 4), u = inputs(37, 5);
  auto all = x;
  gelu_inplace(all.data(), 37);
  auto all_s = x;
  swiglu_inplace(all_s.data(), u.data(), 37);
  for (int n = 1; n <= 37; ++n) {
    auto part = x;
    gelu_inplace(part.data(), n);
    auto part_s = x;
    swiglu_inplace(part_s.data(), u.data(), n);
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(part[i], all[i]) << "n = " << n << " i = " << i;
      ASSERT_EQ(part_s[i], all_s[i]) << "n = " << n << " i = " << i;
    }
  }
}

}  // namespace
}  // namespace kvforge
