// The all-heads tile kernel of latent (MLA) views (KvView::v_in_k, f32/f16
// rows; ops/attention_avx2.cpp): it computes what the scalar reference
// computes, and each head's result depends only on its query and its rows,
// so decode (one token, all heads), prefill (several tokens sharing rows,
// attend_tokens) and any grouping of heads give the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/attention.h"
#include "util/fp16.h"

namespace kvforge {
namespace {

struct Latent {
  KvStorage st;
  int dk, dv;
  std::vector<uint8_t> rows;  // [n][dk] in st
  Latent(KvStorage st_, int n, int dk_, int dv_, std::mt19937& rng) : st(st_), dk(dk_), dv(dv_) {
    std::normal_distribution<float> nd(0, 1);
    rows.resize((size_t)n * kv_row_bytes(st, dk));
    for (size_t i = 0; i < (size_t)n * dk; ++i) {
      const float x = 1.5f * nd(rng);
      if (st == KvStorage::F32) ((float*)rows.data())[i] = x;
      else ((fp16_t*)rows.data())[i] = fp32_to_fp16(x);
    }
  }
  KvView view(int n_rows) const {
    KvView w;
    w.storage = st;
    w.head_dim_k = dk;
    w.head_dim_v = dv;
    w.v_in_k = true;
    w.k_stride = w.v_stride = kv_row_bytes(st, dk);
    w.segments[0] = {rows.data(), rows.data(), n_rows};
    w.n_segments = 1;
    return w;
  }
};

TEST(AttentionLatent, AllHeadsKernelMatchesScalarReference) {
  if (simd_level() < SimdLevel::AVX2) GTEST_SKIP() << "no AVX2 on this CPU: the scalar path is the only one";
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  // SmolLM2 at -68.75 % (120 / 96, 9 heads) and the DeepSeek shape (576 / 512, 16 heads) in small.
  for (auto [dk, dv, group] : {std::tuple{120, 96, 9}, {96, 64, 16}, {24, 16, 1}, {64, 64, 7}})
    for (KvStorage st : {KvStorage::F32, KvStorage::F16})
      for (int n : {1, 31, 300}) {
        const Latent L(st, n, dk, dv, rng);
        std::vector<float> q((size_t)group * dk), a((size_t)group * dv), b(a.size());
        for (float& x : q) x = nd(rng);
        const float scale = 1.0f / std::sqrt((float)dk);
        attend(q.data(), group, L.view(n), scale, a.data());
        attend_ref(q.data(), group, L.view(n), scale, b.data());
        // Outputs are convex sums of O(1.5) values; the two differ in the
        // order of the score sums (f32: ~1e-6 relative), softmax
        // exponentials (the SIMD exp: ~2e-7) and the V sums.
        for (size_t i = 0; i < a.size(); ++i)
          ASSERT_NEAR(a[i], b[i], 2e-5f) << kv_storage_name(st) << " dk " << dk << " group " << group << " rows " << n;
      }
}

TEST(AttentionLatent, EachHeadIndependentOfGroupingAndTokens) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0, 1);
  // As many tokens as the joint kernel takes (kAttnMaxHeads heads in all).
  const int dk = 120, dv = 96, group = 9, n = 300, n_tok = std::min(kAttnMaxTokens, kAttnMaxHeads / group);
  for (KvStorage st : {KvStorage::F32, KvStorage::F16}) {
    const Latent L(st, n, dk, dv, rng);
    std::vector<float> q((size_t)n_tok * group * dk), joint((size_t)n_tok * group * dv), alone(joint.size());
    for (float& x : q) x = nd(rng);
    // Consecutive tokens over the same rows (prefill), jointly ...
    const float* qs[kAttnMaxTokens];
    float* outs[kAttnMaxTokens];
    KvView views[kAttnMaxTokens];
    for (int i = 0; i < n_tok; ++i) {
      qs[i] = &q[(size_t)i * group * dk];
      outs[i] = &joint[(size_t)i * group * dv];
      views[i] = L.view(n - n_tok + 1 + i);
    }
    attend_tokens(qs, views, n_tok, group, 0.09f, outs);
    // ... and each head of each token alone (decode of one head).
    for (int i = 0; i < n_tok; ++i)
      for (int g = 0; g < group; ++g)
        attend(qs[i] + (size_t)g * dk, 1, views[i], 0.09f, &alone[((size_t)i * group + g) * dv]);
    ASSERT_EQ(0, std::memcmp(joint.data(), alone.data(), joint.size() * sizeof(float))) << kv_storage_name(st);
  }
}

}  // namespace
}  // namespace kvforge
