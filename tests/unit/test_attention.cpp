// Fused attention: the SIMD chunk kernel against the scalar reference, and
// batch invariance (a query gives the same bits in a prefill batch as alone
// in decode, where its chunks run separately and are merged).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "kv/kv_cache.h"
#include "kv_test_view.h"
#include "kv/kv_policy.h"
#include "ops/attention.h"
#include "util/fp16.h"
#include "simd_levels.h"

using namespace kvforge;

namespace {

// K/V rows of one head in the storage format, plus a view over 1 or 2 segments.
struct Rows {
  KvStorage st;
  int dk, dv;
  std::vector<uint8_t> k, v;
  Rows(KvStorage st_, int n, int dk_, int dv_, std::mt19937& rng) : st(st_), dk(dk_), dv(dv_) {
    std::normal_distribution<float> nd(0, 1);
    k.resize((size_t)n * kv_row_bytes(st, dk));
    v.resize((size_t)n * kv_row_bytes(st, dv));
    auto fill = [&](std::vector<uint8_t>& b, size_t count, float s) {
      for (size_t i = 0; i < count; ++i) {
        const float x = nd(rng) * s;
        if (st == KvStorage::F32) ((float*)b.data())[i] = x;
        else ((fp16_t*)b.data())[i] = fp32_to_fp16(x);
      }
    };
    fill(k, (size_t)n * dk, 2.0f);  // spread scores: a peaky softmax
    fill(v, (size_t)n * dv, 1.0f);
  }
  KvView view(int n_first, int n_second) const {
    return test::rows_view(st, dk, dv, k.data(), v.data(), n_first, n_second);
  }
};

}  // namespace

// Tolerance: out is a convex combination of V rows, so an error d in the
// scores moves it by at most ~2|d| max|v|; the scores differ by the order of
// dk products (|d| <= dk * eps * |q| |k| * scale), and the exp by ~2 ulp.
// So tol = (2 * dk * eps * max|q| max|k| * scale * dk + 8 * eps) * max|v|,
// which for these inputs is ~1e-4; measured differences are ~1e-6.
TEST(Attention, SimdMatchesScalarReference) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  const float eps = std::numeric_limits<float>::epsilon();
  for (KvStorage st : {KvStorage::F16, KvStorage::F32})
    for (auto [dim, dv] : {std::pair{64, 64}, {72, 72}, {128, 128}, {96, 64}, {64, 40}})
      for (int group : {1, 3, 5})
        for (auto [n1, n2] : {std::pair{1, 0}, {31, 0}, {33, 0}, {300, 0}, {600, 0}, {20, 270}}) {
          Rows rows(st, n1 + n2, dim, dv, rng);
          std::vector<float> q((size_t)group * dim), a((size_t)group * dv), b((size_t)group * dv);
          for (auto& x : q) x = nd(rng);
          const float scale = 1.0f / std::sqrt((float)dim);
          const KvView view = rows.view(n1, n2);
          attend(q.data(), group, view, scale, a.data());
          attend_ref(q.data(), group, view, scale, b.data());
          float qmax = 0, kmax = 8.0f, vmax = 4.0f;  // |k| <~ 4 sigma * 2, |v| <~ 4 sigma
          for (float x : q) qmax = std::max(qmax, std::fabs(x));
          const float tol = (2.0f * dim * dim * eps * qmax * kmax * scale + 8 * eps) * vmax;
          for (size_t i = 0; i < a.size(); ++i)
            ASSERT_NEAR(a[i], b[i], tol) << "storage " << kv_storage_name(st) << " dims " << dim << "/" << dv << " group "
                                          << group << " rows " << n1 << "+" << n2 << " i " << i;
        }
}

// A group wider than the kernel's kAttnMaxHeads (DeepSeek-V2/V3 attend with
// 128 MLA heads as one group) runs through the SIMD kernel in slices, each
// head bit-identical to that head attending alone.
TEST(Attention, WideGroupsRunInSimdSlices) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(13);
  std::normal_distribution<float> nd(0, 1);
  const int dim = 64, group = 2 * kAttnMaxHeads + 2;
  for (KvStorage st : {KvStorage::F16, KvStorage::F32}) {
    Rows rows(st, 300, dim, dim, rng);
    const KvView view = rows.view(300, 0);
    std::vector<AttnChunk> ch;
    attn_chunks(view, ch);
    std::vector<float> q((size_t)group * dim);
    for (auto& x : q) x = nd(rng);
    std::vector<float> all(attn_partial_floats(group, dim)), one(attn_partial_floats(1, dim));
    ASSERT_TRUE(attend_chunk_avx2(q.data(), group, view, ch[0], 0.125f, all.data()));
    for (int g = 0; g < group; ++g) {
      ASSERT_TRUE(attend_chunk_avx2(&q[(size_t)g * dim], 1, view, ch[0], 0.125f, one.data()));
      ASSERT_EQ(0, std::memcmp(one.data(), &all[g * one.size()], one.size() * sizeof(float)))
          << kv_storage_name(st) << " head " << g;
    }
  }
}

// The AVX2 kernel blocks heads (passes of up to 4) and rows (2-8 per score
// block, by the pass's width) and, with more than 4 heads, converts f16 rows
// to f32 once per tile: none of that may change a head's bits. Every group
// size from 1 to 9 (so every pass width and remainder) against each head
// alone, f16 rows against the same values stored as f32, head dims with an
// odd number of 8-column blocks and rows past a whole tile and score block.
TEST(Attention, EachHeadIndependentOfGroupSizeAndStorage) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0, 1);
  for (int dim : {64, 72})
    for (int n : {37, 256}) {
      Rows f16(KvStorage::F16, n, dim, dim, rng);
      Rows f32(KvStorage::F32, n, dim, dim, rng);
      for (size_t i = 0; i < (size_t)n * dim; ++i) {  // the f16 values, as f32
        ((float*)f32.k.data())[i] = fp16_to_fp32(((const fp16_t*)f16.k.data())[i]);
        ((float*)f32.v.data())[i] = fp16_to_fp32(((const fp16_t*)f16.v.data())[i]);
      }
      std::vector<AttnChunk> ch;
      attn_chunks(f16.view(n, 0), ch);
      for (int group = 1; group <= 9; ++group) {
        std::vector<float> q((size_t)group * dim);
        for (auto& x : q) x = nd(rng);
        std::vector<float> a(attn_partial_floats(group, dim)), b(a.size()), one(attn_partial_floats(1, dim));
        ASSERT_TRUE(attend_chunk_avx2(q.data(), group, f16.view(n, 0), ch[0], 0.125f, a.data()));
        ASSERT_TRUE(attend_chunk_avx2(q.data(), group, f32.view(n, 0), ch[0], 0.125f, b.data()));
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "dim " << dim << " group " << group;
        for (int g = 0; g < group; ++g) {
          ASSERT_TRUE(attend_chunk_avx2(&q[(size_t)g * dim], 1, f16.view(n, 0), ch[0], 0.125f, one.data()));
          ASSERT_EQ(0, std::memcmp(one.data(), &a[g * one.size()], one.size() * sizeof(float)))
              << "dim " << dim << " rows " << n << " group " << group << " head " << g;
        }
      }
    }
}

// attend() over the whole view == chunk partials computed one by one (in any
// order, as decode's threads do) and merged: bit for bit.
TEST(Attention, SplitChunksEqualWholeView) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    for (int n : {1, 255, 256, 257, 1000}) {
      Rows rows(KvStorage::F16, n, 64, 64, rng);
      const int group = 3;
      std::vector<float> q(group * 64), a(group * 64), b(group * 64);
      for (auto& x : q) x = nd(rng);
      const KvView view = rows.view(n, 0);
      attend(q.data(), group, view, 0.125f, a.data());
      std::vector<AttnChunk> ch;
      attn_chunks(view, ch);
      const size_t pf = attn_partial_floats(group, 64);
      std::vector<float> parts(pf * ch.size());
      for (int i = (int)ch.size() - 1; i >= 0; --i) attend_chunk(q.data(), group, view, ch[i], 0.125f, &parts[pf * i]);
      attend_merge(parts.data(), (int)ch.size(), group, view, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << n << " level " << simd_level_name(lvl);
    }
  }
}

// Through a real cache: K/V written for a 300-token batch, attention for
// every query position, versus the same tokens written and attended one at
// a time (decode). Bit-identical at every position.
TEST(Attention, BatchedQueryEqualsQueryAlone) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  const KvShape shape{1, 2, 64, 64};
  const int n = 300, group = 3, kvd = 2 * 64;
  std::vector<float> k((size_t)n * kvd), v((size_t)n * kvd), q((size_t)n * 2 * group * 64);
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (auto& x : q) x = nd(rng);
  for (KvStorage st : {KvStorage::F16, KvStorage::F32, KvStorage::Q8_0}) {
    KvPolicy policy;
    policy.storage = st;
    auto batch = make_kv_cache(policy, shape, 512), single = make_kv_cache(policy, shape, 512);
    const KvPlan pb = batch->plan(n);
    batch->write(0, pb, k.data(), v.data());
    batch->commit(pb);
    for (int t = 0; t < n; ++t) {
      const KvPlan ps = single->plan(1);
      single->write(0, ps, &k[(size_t)t * kvd], &v[(size_t)t * kvd]);
      single->commit(ps);
      for (int h = 0; h < 2; ++h) {
        const float* qt = &q[((size_t)t * 2 + h) * group * 64];
        std::vector<float> a(group * 64), b(group * 64);
        attend(qt, group, batch->view(0, h, t), 0.125f, a.data());
        attend(qt, group, single->view(0, h, t), 0.125f, b.data());
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "pos " << t << " head " << h;
      }
    }
  }
}

// Prefill's multi-token attention (attend_tokens: runs of up to 4
// consecutive tokens of one KV head) gives each token exactly what attend()
// gives it alone, for runs that share all rows but the last tile's (joint
// path) and runs that do not (one by one): full and windowed caches (two
// segments), f16/f32/q8 storage, groups of 1 and 3 query heads.
TEST(Attention, TokensTogetherEqualTokensAlone) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  const int n = 300, dim = 64;
  for (int group : {1, 3})
    for (const char* spec : {"full", "full+f32", "full+q8", "window:96,sinks:4", "window:40"}) {
      const KvShape shape{1, 1, dim, dim};
      std::vector<float> k((size_t)n * dim), v((size_t)n * dim), q((size_t)n * group * dim);
      for (auto& x : k) x = nd(rng);
      for (auto& x : v) x = nd(rng);
      for (auto& x : q) x = nd(rng);
      auto cache = make_kv_cache(parse_kv_policy(spec), shape, 512);
      // Write in waves of 16 (a window's ring accepts a wave of up to its
      // free cells), then attend every run [t, t + len) that ends in the wave.
      for (int w0 = 0, nw = 0; w0 < n; w0 += nw) {
        nw = std::min(16, n - w0);
        const KvPlan p = cache->plan(nw);
        cache->write(0, p, &k[(size_t)w0 * dim], &v[(size_t)w0 * dim]);
        for (int len = 1; len <= kAttnMaxTokens; ++len)
          for (int t = w0; t + len <= w0 + nw; ++t) {
            const float* qs[kAttnMaxTokens];
            float* outs[kAttnMaxTokens];
            KvView views[kAttnMaxTokens];
            std::vector<float> together((size_t)len * group * dim), alone(group * dim);
            for (int i = 0; i < len; ++i) {
              qs[i] = &q[(size_t)(t + i) * group * dim];
              outs[i] = &together[(size_t)i * group * dim];
              views[i] = cache->view(0, 0, t + i);
            }
            attend_tokens(qs, views, len, group, 0.125f, outs);
            for (int i = 0; i < len; ++i) {
              attend(qs[i], group, views[i], 0.125f, alone.data());
              ASSERT_EQ(0, std::memcmp(alone.data(), outs[i], alone.size() * sizeof(float)))
                  << spec << " group " << group << " run " << t << "+" << len << " token " << i;
            }
          }
        cache->commit(p);
      }
    }
}

// A row a shorter view does not reach never touches its result, even when
// it holds inf (0 * inf would be NaN): the joint path skips it exactly.
TEST(Attention, TokensTogetherIgnoreRowsPastTheirView) {
  std::mt19937 rng(9);
  Rows rows(KvStorage::F32, 40, 64, 64, rng);
  float* v = (float*)rows.v.data();
  std::fill(v + 37 * 64, v + 38 * 64, std::numeric_limits<float>::infinity());  // row 37
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> q(2 * 64), together(2 * 64), alone(64);
  for (auto& x : q) x = nd(rng);
  const KvView views[2] = {rows.view(37, 0), rows.view(38, 0)};  // rows 0..36 and 0..37
  const float* qs[2] = {q.data(), q.data() + 64};
  float* outs[2] = {together.data(), together.data() + 64};
  attend_tokens(qs, views, 2, 1, 0.125f, outs);
  attend(qs[0], 1, views[0], 0.125f, alone.data());
  for (int d = 0; d < 64; ++d) ASSERT_TRUE(std::isfinite(outs[0][d])) << d;
  EXPECT_EQ(0, std::memcmp(alone.data(), outs[0], alone.size() * sizeof(float)));
}
