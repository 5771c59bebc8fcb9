// Views whose V rows live inside the K rows (the latent cache of MLA: a row
// is [c_KV | k_pe] and V is its first head_dim_v values) and views that carry
// their own Hadamard block size: every attention kernel (scalar, AVX2; f32,
// f16, q8, q4) must read them through the view's strides and give exactly what
// it gives for the same values stored as separate, packed K and V rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/attention.h"
#include "ops/hadamard.h"
#include "ops/kv_view.h"
#include "ops/quantize.h"
#include "simd_levels.h"

namespace kvforge {
namespace {

// n rows of dk values in the storage format, and a packed copy of the first
// dv values of each (the same bytes: quantized rows are whole 32-blocks, and a
// Hadamard-rotated row's prefix keeps the row's blocks).
struct LatentRows {
  KvStorage st;
  int dk, dv, block;
  std::vector<uint8_t> rows, v_copy;
  LatentRows(KvStorage st_, int n, int dk_, int dv_, int block_, std::mt19937& rng)
      : st(st_), dk(dk_), dv(dv_), block(block_) {
    std::normal_distribution<float> nd(0, 1);
    const size_t kb = kv_row_bytes(st, dk), vb = kv_row_bytes(st, dv);
    rows.resize((size_t)n * kb);
    v_copy.resize((size_t)n * vb);
    std::vector<float> x(dk);
    for (int r = 0; r < n; ++r) {
      for (float& e : x) e = 1.5f * nd(rng);
      if (block) hadamard_rotate(x.data(), dk, block);
      quantize_row(kv_storage_type(st), x.data(), &rows[(size_t)r * kb], dk);
      std::memcpy(&v_copy[(size_t)r * vb], &rows[(size_t)r * kb], vb);
    }
  }
  // shared: V is a view of the K rows; else the packed copy. Two segments
  // when n_second > 0.
  KvView view(bool shared, int n_first, int n_second) const {
    KvView w;
    w.storage = st;
    w.hadamard_block = block;
    w.head_dim_k = dk;
    w.head_dim_v = dv;
    w.k_stride = kv_row_bytes(st, dk);
    w.v_stride = shared ? w.k_stride : kv_row_bytes(st, dv);
    const uint8_t* v = shared ? rows.data() : v_copy.data();
    w.segments[0] = {rows.data(), v, n_first};
    w.n_segments = 1;
    if (n_second > 0) {
      w.segments[1] = {rows.data() + n_first * w.k_stride, v + n_first * w.v_stride, n_second};
      w.n_segments = 2;
    }
    return w;
  }
};

struct Case {
  KvStorage st;
  int block;
};

TEST(AttentionViews, VInsideKRowsEqualsPackedV) {
  std::mt19937 rng(91);
  std::normal_distribution<float> nd(0, 1);
  // The MLA shape in small: K row = latent 64 + rope 32, V = the latent.
  const int dk = 96, dv = 64;
  int compared = 0;
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    for (Case c : {Case{KvStorage::F32, 0}, Case{KvStorage::F16, 0}, Case{KvStorage::Q8_0, 0},
                   Case{KvStorage::Q4_0, 0}, Case{KvStorage::Q8_0, 32}, Case{KvStorage::Q4_0, 32}})
      for (int group : {1, 3, 16})
        for (auto [n1, n2] : {std::pair{1, 0}, {33, 0}, {300, 0}, {20, 270}}) {
          const LatentRows rows(c.st, n1 + n2, dk, dv, c.block, rng);
          std::vector<float> q((size_t)group * dk), a((size_t)group * dv), b((size_t)group * dv);
          for (float& x : q) x = nd(rng);
          const float scale = 1.0f / std::sqrt((float)dk);
          attend(q.data(), group, rows.view(true, n1, n2), scale, a.data());
          attend(q.data(), group, rows.view(false, n1, n2), scale, b.data());
          ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
              << kv_storage_name(c.st) << " block " << c.block << " group " << group << " rows " << n1 << "+" << n2;
          ++compared;
        }
  }
  EXPECT_GE(compared, 6 * 3 * 4);
}

// attend_tokens (several consecutive query tokens sharing a view's rows, the
// joint AVX2 path of prefill) honours the strides too.
TEST(AttentionViews, TokensOverSharedRowsEqualPackedV) {
  std::mt19937 rng(92);
  std::normal_distribution<float> nd(0, 1);
  const int dk = 96, dv = 64, group = 4, n_tok = kAttnMaxTokens, n = 100;
  for (KvStorage st : {KvStorage::F32, KvStorage::F16}) {
    const LatentRows rows(st, n, dk, dv, 0, rng);
    std::vector<float> q((size_t)n_tok * group * dk), a((size_t)n_tok * group * dv), b(a.size());
    for (float& x : q) x = nd(rng);
    const float* qs[kAttnMaxTokens];
    float *oa[kAttnMaxTokens], *ob[kAttnMaxTokens];
    KvView shared[kAttnMaxTokens], packed[kAttnMaxTokens];
    for (int i = 0; i < n_tok; ++i) {
      qs[i] = &q[(size_t)i * group * dk];
      oa[i] = &a[(size_t)i * group * dv];
      ob[i] = &b[(size_t)i * group * dv];
      shared[i] = rows.view(true, n - n_tok + 1 + i, 0);
      packed[i] = rows.view(false, n - n_tok + 1 + i, 0);
    }
    attend_tokens(qs, shared, n_tok, group, 0.1f, oa);
    attend_tokens(qs, packed, n_tok, group, 0.1f, ob);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << kv_storage_name(st);
  }
}

// The view's Hadamard block, not one derived from head_dim_v, rotates the
// output back: rows of 96 rotated in blocks of 32 with V = their first 64
// values (whose own largest block would be 64) give the attention of the
// unrotated values, within q8 rounding.
TEST(AttentionViews, HadamardBlockOfTheViewRotatesBack) {
  std::mt19937 rng(93);
  std::normal_distribution<float> nd(0, 1);
  const int dk = 96, dv = 64, n = 200, group = 2, block = 32;
  std::vector<float> x((size_t)n * dk);  // [n][dk] unrotated rows
  for (float& e : x) e = nd(rng);
  std::vector<uint8_t> rows((size_t)n * kv_row_bytes(KvStorage::Q8_0, dk));
  for (int r = 0; r < n; ++r) {
    std::vector<float> rot(&x[(size_t)r * dk], &x[(size_t)(r + 1) * dk]);
    hadamard_rotate(rot.data(), dk, block);
    quantize_row(GgmlType::Q8_0, rot.data(), &rows[r * kv_row_bytes(KvStorage::Q8_0, dk)], dk);
  }
  KvView w;
  w.storage = KvStorage::Q8_0;
  w.hadamard_block = block;
  w.head_dim_k = dk;
  w.head_dim_v = dv;
  w.k_stride = w.v_stride = kv_row_bytes(KvStorage::Q8_0, dk);
  w.segments[0] = {rows.data(), rows.data(), n};
  w.n_segments = 1;
  std::vector<float> q((size_t)group * dk), out((size_t)group * dv);
  for (float& e : q) e = nd(rng);
  const float scale = 1.0f / std::sqrt((float)dk);
  attend(q.data(), group, w, scale, out.data());
  for (int g = 0; g < group; ++g) {
    // Exact softmax attention over the unrotated f32 rows, in double.
    std::vector<double> s(n), ref(dv, 0.0);
    double mx = -1e30, l = 0;
    for (int r = 0; r < n; ++r) {
      double d = 0;
      for (int i = 0; i < dk; ++i) d += (double)q[(size_t)g * dk + i] * x[(size_t)r * dk + i];
      s[r] = d * scale;
      mx = std::max(mx, s[r]);
    }
    for (int r = 0; r < n; ++r) {
      const double p = std::exp(s[r] - mx);
      l += p;
      for (int i = 0; i < dv; ++i) ref[i] += p * x[(size_t)r * dk + i];
    }
    double e2 = 0, r2 = 0;
    for (int i = 0; i < dv; ++i) {
      ref[i] /= l;
      e2 += (out[(size_t)g * dv + i] - ref[i]) * (out[(size_t)g * dv + i] - ref[i]);
      r2 += ref[i] * ref[i];
    }
    // q8 attention's relative error is ~2e-4 (test_kv_quant.cpp); rotating
    // back with the wrong blocks gives an error of the order of the output itself.
    EXPECT_LT(e2 / r2, 5e-4) << "head " << g;
  }
}

}  // namespace
}  // namespace kvforge
