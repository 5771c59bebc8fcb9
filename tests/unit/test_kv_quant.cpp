// Quantized K/V (q8, q4, with and without the Hadamard rotation): attention
// error against the f32 cache, the rotation itself, and the scalar/AVX2
// kernels agreeing on what the cache computes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu_features.h"
#include "kv/kv_policy.h"
#include "ops/attention.h"
#include "ops/hadamard.h"

namespace kvforge {
namespace {

TEST(Hadamard, IsOrthogonalAndItsOwnInverse) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int n : {32, 64, 96, 128}) {
    std::vector<float> x(n), y(n);
    for (float& e : x) e = nd(rng);
    for (float& e : y) e = nd(rng);
    double dot0 = 0, dot1 = 0;
    for (int i = 0; i < n; ++i) dot0 += (double)x[i] * y[i];
    std::vector<float> hx = x, hy = y;
    hadamard_rotate(hx.data(), n);
    hadamard_rotate(hy.data(), n);
    for (int i = 0; i < n; ++i) dot1 += (double)hx[i] * hy[i];
    EXPECT_NEAR(dot0, dot1, 1e-4 * n) << n;
    hadamard_rotate(hx.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(hx[i], x[i], 1e-5f) << n;
  }
  EXPECT_EQ(hadamard_block(64), 64);
  EXPECT_EQ(hadamard_block(96), 32);
  // An outlier channel is spread evenly over the block.
  std::vector<float> e(64, 0.0f);
  e[5] = 8.0f;
  hadamard_rotate(e.data(), 64);
  for (float v : e) EXPECT_FLOAT_EQ(std::fabs(v), 1.0f);
}

struct Rows {
  std::vector<float> k, v;  // [n][dim] f32
};

// n random K/V rows; channel `outlier` (if >= 0) of every K and V row is
// scaled by `gain`, like the outlier channels of real keys.
Rows random_rows(int n, int dim, uint32_t seed, int outlier = -1, float gain = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Rows r;
  r.k.resize((size_t)n * dim);
  r.v.resize((size_t)n * dim);
  for (float& x : r.k) x = nd(rng);
  for (float& x : r.v) x = nd(rng);
  if (outlier >= 0)
    for (int i = 0; i < n; ++i) {
      r.k[(size_t)i * dim + outlier] *= gain;
      r.v[(size_t)i * dim + outlier] *= gain;
    }
  return r;
}

// Attention outputs [n_q][n_group][dim] of n_q random queries over all rows,
// through a one-layer, one-head cache of the given policy.
std::vector<float> attend_through(const std::string& kv, const Rows& rows, int dim, int n_group,
                                  const std::vector<float>& queries) {
  const int n = (int)(rows.k.size() / dim);
  auto cache = make_kv_cache(parse_kv_policy(kv), KvShape{1, 1, dim, dim}, n);
  // Written in chunks of 10 like a prefill would.
  for (int i0 = 0; i0 < n; i0 += 10) {
    const KvPlan p = cache->plan(std::min(10, n - i0));
    cache->write(0, p, &rows.k[(size_t)i0 * dim], &rows.v[(size_t)i0 * dim]);
    cache->commit(p);
  }
  const int n_q = (int)(queries.size() / ((size_t)n_group * dim));
  std::vector<float> out(queries.size());
  const float scale = 1.0f / std::sqrt((float)dim);
  for (int i = 0; i < n_q; ++i)
    attend(&queries[(size_t)i * n_group * dim], n_group, cache->view(0, 0, n - 1), scale,
           &out[(size_t)i * n_group * dim]);
  return out;
}

double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
  double e = 0, s = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    s += (double)ref[i] * ref[i];
  }
  return e / s;
}

std::vector<float> random_queries(int n, uint32_t seed, float gain) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(n);
  for (float& x : q) x = gain * nd(rng);
  return q;
}

// Error budget. A block of 32 Gaussian values has absmax ~2.5 sigma; Q8_0
// rounds to steps of absmax/127 (uniform error, variance step^2/12), a
// relative MSE per element of eps8 = (2.5/127)^2/12 ~ 3e-5; Q4_0 uses
// absmax/8 steps: eps4 = (2.5/8)^2/12 ~ 8e-3. V's error reaches the output
// directly (~eps); K's and the 8-bit q's errors move every score by
// ~sqrt(2 eps)|s| and thus every softmax weight, and since the reference
// output is an average of many random V rows (small norm), those weight errors
// weigh several eps more. Measured: q8 ~2.1e-4 (7 eps8), q4 ~3.5e-2
// (4.5 eps4). Bounds: ~2.5x / ~1.7x the measurement, still two orders of
// magnitude apart, so a q8 cache that silently stored 4-bit rows would fail.
constexpr double kQ8Bound = 5e-4, kQ4Bound = 6e-2;

TEST(QuantizedAttention, NmseAgainstF32CacheWithinBounds) {
  const int dim = 64, n_group = 3, n = 300;
  const Rows rows = random_rows(n, dim, 21);
  // Query gain 2: scores spread over several units, attention neither uniform nor one-hot.
  const auto q = random_queries(20 * n_group * dim, 22, 2.0f);
  const auto ref = attend_through("f32", rows, dim, n_group, q);
  struct Case {
    const char* kv;
    double bound;
  };
  for (const Case c : {Case{"q8", kQ8Bound}, Case{"q8,hadamard", kQ8Bound}, Case{"q4", kQ4Bound},
                       Case{"q4,hadamard", kQ4Bound}}) {
    const double e = nmse(attend_through(c.kv, rows, dim, n_group, q), ref);
    EXPECT_LT(e, c.bound) << c.kv;
    EXPECT_GT(e, 0.0) << c.kv;
    std::printf("[ info ] %-12s NMSE %.2e (bound %.0e)\n", c.kv, e, c.bound);
  }
}

TEST(QuantizedAttention, HadamardReducesTheErrorOfOutlierChannels) {
  // Channel 7 twenty times larger than the rest: plain absmax blocks spend
  // their grid on it and crush the other 31 values of its block; the rotation
  // spreads it over all 64 channels.
  const int dim = 64, n_group = 3, n = 300;
  const Rows rows = random_rows(n, dim, 31, 7, 20.0f);
  const auto q = random_queries(20 * n_group * dim, 32, 0.3f);
  const auto ref = attend_through("f32", rows, dim, n_group, q);
  for (const char* s : {"q8", "q4"}) {
    const std::string st = s;
    const double plain = nmse(attend_through(st, rows, dim, n_group, q), ref);
    const double rot = nmse(attend_through(st + ",hadamard", rows, dim, n_group, q), ref);
    std::printf("[ info ] outlier channel, %s: NMSE %.2e plain, %.2e hadamard\n", s, plain, rot);
    EXPECT_LT(rot, 0.5 * plain) << s;
  }
}

TEST(QuantizedAttention, ScalarAndSimdKernelsAgree) {
  // The same cache read through the scalar reference and the best SIMD level:
  // different summation orders, so close but not necessarily identical.
  const int dim = 64, n_group = 3, n = 100;
  const Rows rows = random_rows(n, dim, 41);
  const auto q = random_queries(5 * n_group * dim, 42, 2.0f);
  for (const char* kv : {"q8", "q4,hadamard"}) {
    const auto best = attend_through(kv, rows, dim, n_group, q);
    const SimdLevel saved = simd_level();
    set_simd_level(SimdLevel::Scalar);
    const auto scalar = attend_through(kv, rows, dim, n_group, q);
    set_simd_level(saved);
    EXPECT_LT(nmse(best, scalar), 1e-10) << kv;
  }
}

}  // namespace
}  // namespace kvforge
