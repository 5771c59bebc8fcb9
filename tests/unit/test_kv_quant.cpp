// Quantized K/V (q8, q4, with and without the Hadamard rotation): attention
// error against the f32 cache, the rotation itself, and the scalar/AVX2
// kernels agreeing on what the cache computes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "backend/cpu_features.h"
#include "kv/kv_policy.h"
#include "ops/attention.h"
#include "ops/ggml_types.h"
#include "ops/hadamard.h"
#include "ops/quantize.h"
#include "kv_test_view.h"
#include "simd_levels.h"

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
    const auto scalar = [&] {
      ScopedSimdLevel at(SimdLevel::Scalar);
      return attend_through(kv, rows, dim, n_group, q);
    }();
    EXPECT_LT(nmse(best, scalar), 1e-10) << kv;
  }
}

// Quantized K/V rows of one head stored directly (no cache), and a view over
// one or two segments of them. The rows need not really be rotated for the
// kernels to be compared: `hadamard` only makes q and the output rotate.
struct QuantRows {
  KvStorage st;
  int dk, dv;
  std::vector<uint8_t> k, v;
  float vmax = 0;  // max |dequantized v|
  QuantRows(KvStorage st_, int n, int dk_, int dv_, std::mt19937& rng) : st(st_), dk(dk_), dv(dv_) {
    std::normal_distribution<float> nd(0, 1);
    k.resize((size_t)n * kv_row_bytes(st, dk));
    v.resize((size_t)n * kv_row_bytes(st, dv));
    std::vector<float> x((size_t)n * std::max(dk, dv));
    for (float& e : x) e = 2.0f * nd(rng);  // spread scores: a peaky softmax
    quantize_row(kv_storage_type(st), x.data(), k.data(), (int64_t)n * dk);
    for (float& e : x) e = nd(rng);
    quantize_row(kv_storage_type(st), x.data(), v.data(), (int64_t)n * dv);
    dequantize_row(kv_storage_type(st), v.data(), x.data(), (int64_t)n * dv);
    for (size_t i = 0; i < (size_t)n * dv; ++i) vmax = std::max(vmax, std::fabs(x[i]));
  }
  KvView view(bool hadamard, int n_first, int n_second) const {
    return test::rows_view(st, dk, dv, k.data(), v.data(), n_first, n_second, hadamard);
  }
};

// The AVX2 quantized kernel against the scalar one (attend_ref). The integer
// dots behind the scores are the same (same q blocks); what differs is the
// rounding of the scale products and of the sum over blocks (a few ulp of
// each block's term), exp (vector exp vs std::exp, a few ulp), the order of the V
// sums, p * (d * q) vs (p * d) * q, and for Q4_0 the -8 applied to the sum
// of the weights. Row counts cover partial 8-row groups and tiles (1, 7, 31,
// 33) and several chunks and segments. Each output is a
// convex combination of V rows summed over <= kAttnChunk rows per chunk, so
// a first-order bound of the difference per element is
// (kAttnChunk + 16) * eps * max|v|; the Hadamard rotation back is
// orthonormal, so the bound is applied to the L2 norm of a head's output
// (times sqrt(dv)). Measured differences are ~300 times smaller.
TEST(QuantizedAttention, Avx2KernelMatchesScalarReference) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(51);
  std::normal_distribution<float> nd(0, 1);
  const float eps = std::numeric_limits<float>::epsilon();
  int compared = 0;
  for (KvStorage st : {KvStorage::Q8_0, KvStorage::Q4_0})
    for (bool had : {false, true})
      for (auto [dk, dv] : {std::pair{32, 32}, {64, 64}, {128, 128}, {96, 64}})
        for (int group : {1, 2, 3, 4, 5, 7})
          for (auto [n1, n2] : {std::pair{1, 0}, {7, 0}, {31, 0}, {33, 0}, {300, 0}, {600, 0}, {20, 270}}) {
            QuantRows rows(st, n1 + n2, dk, dv, rng);
            std::vector<float> q((size_t)group * dk), a((size_t)group * dv), b((size_t)group * dv);
            for (auto& x : q) x = nd(rng);
            const float scale = 1.0f / std::sqrt((float)dk);
            const KvView view = rows.view(had, n1, n2);
            attend(q.data(), group, view, scale, a.data());
            attend_ref(q.data(), group, view, scale, b.data());
            const double tol = (kAttnChunk + 16) * eps * rows.vmax * std::sqrt((double)dv);
            for (int g = 0; g < group; ++g) {
              double e2 = 0, r2 = 0;
              for (int d = 0; d < dv; ++d) {
                const double diff = (double)a[(size_t)g * dv + d] - b[(size_t)g * dv + d];
                e2 += diff * diff;
                r2 += (double)b[(size_t)g * dv + d] * b[(size_t)g * dv + d];
              }
              ASSERT_GT(r2, 0.0);
              ASSERT_LE(std::sqrt(e2), tol) << kv_storage_name(st) << (had ? ",hadamard" : "") << " dk " << dk
                                            << " dv " << dv << " group " << group << " rows " << n1 << "+" << n2
                                            << " head " << g;
            }
            ++compared;
          }
  EXPECT_EQ(compared, 2 * 2 * 4 * 6 * 7);
}

// attend() over a whole quantized view == its chunk partials computed one by
// one in reverse order (as decode's threads may) and merged: bit for bit, at
// every SIMD level.
TEST(QuantizedAttention, SplitChunksEqualWholeView) {
  std::mt19937 rng(53);
  std::normal_distribution<float> nd(0, 1);
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    for (KvStorage st : {KvStorage::Q8_0, KvStorage::Q4_0})
      for (bool had : {false, true})
        for (int n : {1, 255, 256, 257, 1000}) {
          const int dim = 64, group = 3;
          QuantRows rows(st, n, dim, dim, rng);
          std::vector<float> q(group * dim), a(group * dim), b(group * dim);
          for (auto& x : q) x = nd(rng);
          const KvView view = rows.view(had, n, 0);
          attend(q.data(), group, view, 0.125f, a.data());
          std::vector<AttnChunk> ch;
          attn_chunks(view, ch);
          const size_t pf = attn_partial_floats(group, dim);
          std::vector<float> parts(pf * ch.size());
          for (int i = (int)ch.size() - 1; i >= 0; --i)
            attend_chunk(q.data(), group, view, ch[i], 0.125f, &parts[pf * i]);
          attend_merge(parts.data(), (int)ch.size(), group, view, b.data());
          ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
              << kv_storage_name(st) << (had ? ",hadamard" : "") << " n " << n << " level "
              << simd_level_name(lvl);
        }
  }
}

// Through real caches: K/V of 300 tokens written as one prefill batch versus
// one token at a time (decode); every query position attends to the same
// bits either way, for every quantized policy, GQA group of 3 and 5.
TEST(QuantizedAttention, BatchedQueryEqualsQueryAlone) {
  std::mt19937 rng(57);
  std::normal_distribution<float> nd(0, 1);
  const int dim = 64, n_kv = 2, n = 300, kvd = n_kv * dim;
  std::vector<float> k((size_t)n * kvd), v((size_t)n * kvd);
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (const char* kv : {"q8", "q8,hadamard", "q4", "q4,hadamard"})
    for (int group : {3, 5}) {
      std::vector<float> q((size_t)n * n_kv * group * dim);
      for (auto& x : q) x = nd(rng);
      const KvShape shape{1, n_kv, dim, dim};
      auto batch = make_kv_cache(parse_kv_policy(kv), shape, 512);
      auto single = make_kv_cache(parse_kv_policy(kv), shape, 512);
      const KvPlan pb = batch->plan(n);
      batch->write(0, pb, k.data(), v.data());
      batch->commit(pb);
      std::vector<float> a(group * dim), b(group * dim);
      for (int t = 0; t < n; ++t) {
        const KvPlan ps = single->plan(1);
        single->write(0, ps, &k[(size_t)t * kvd], &v[(size_t)t * kvd]);
        single->commit(ps);
        for (int h = 0; h < n_kv; ++h) {
          const float* qt = &q[((size_t)t * n_kv + h) * group * dim];
          attend(qt, group, batch->view(0, h, t), 0.125f, a.data());
          attend(qt, group, single->view(0, h, t), 0.125f, b.data());
          ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
              << kv << " group " << group << " pos " << t << " head " << h;
        }
      }
    }
}

// K/V writes quantize rows with quantize_row(); its AVX2 versions (F16, Q8_0,
// Q4_0) must store exactly the scalar bytes, or caches written at different
// SIMD levels would differ. Random blocks plus the edge cases: all zeros,
// -0, ties of the largest magnitude (Q4_0 keeps the first), exact halves.
TEST(QuantizedAttention, QuantizeRowSimdBitIdenticalToScalar) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(61);
  std::normal_distribution<float> nd(0, 1);
  const int nb = 64, n = nb * QK;
  std::vector<float> x(n);
  for (float& e : x) e = nd(rng) * std::exp(nd(rng));
  for (int i = 0; i < QK; ++i) x[i] = 0.0f;                      // block 0: zeros
  for (int i = QK; i < 2 * QK; ++i) x[i] = (i % 2) ? -0.0f : 0.0f;  // block 1: signed zeros
  x[2 * QK + 3] = 5.0f, x[2 * QK + 9] = -5.0f;                   // block 2: tie, positive first
  x[3 * QK + 1] = -7.0f, x[3 * QK + 30] = 7.0f;                  // block 3: tie, negative first
  for (int i = 4 * QK; i < 5 * QK; ++i) x[i] = 0.5f * (float)(i % 17 - 8);  // block 4: halves
  for (int i = 5 * QK; i < 6 * QK; ++i) x[i] = 1e-6f * nd(rng);  // block 5: f16 subnormal scales
  x[6 * QK + 2] = 60000.0f;                                       // block 6: near the f16 range
  for (GgmlType t : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    const size_t bytes = (size_t)row_bytes(t, n);
    std::vector<uint8_t> simd(bytes), scalar(bytes);
    quantize_row(t, x.data(), simd.data(), n);
    {
      ScopedSimdLevel at(SimdLevel::Scalar);
      quantize_row(t, x.data(), scalar.data(), n);
    }
    ASSERT_EQ(0, std::memcmp(simd.data(), scalar.data(), bytes)) << type_traits(t).name;
  }
}

}  // namespace
}  // namespace kvforge
