// The AVX-512 attention chunk kernel (attention_avx512.cpp), called directly:
// bit for bit against the AVX2 one for every head count (pass widths,
// staged f16 rows past 4 heads), head dims (16-column vectors and an 8-column
// rest), row counts (8-row score blocks and the rows after them) and heads
// that stop at different rows of the last tile (prefill's token runs).
//
// Runs on the emulated build (SIMDe, tests/avx512_emu/; every AVX2 machine)
// and on the native one, skipped unless this CPU has the AVX-512 level.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "kv_test_view.h"
#include "ops/attention.h"
#include "util/fp16.h"

using namespace kvforge;

namespace {

using HeadsFn = bool (*)(const float* const*, const int32_t*, int, const KvView&, const AttnChunk&, float, float*);

struct Impl {
  const char* name;
  bool emulated;
  HeadsFn fn;
};

void PrintTo(const Impl& i, std::ostream* os) { *os << i.name; }
std::string impl_name(const testing::TestParamInfo<Impl>& i) { return i.param.name; }

const Impl kImpls[] = {
#if defined(KVFORGE_HAVE_AVX512_EMU)
    {"Emulated", true, avx512_emu::attend_chunk_heads_avx512},
#endif
    {"Native", false, avx512::attend_chunk_heads_avx512},
};

class AttentionAvx512 : public testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    const auto& c = cpu_features();
    if (!(c.avx2 && c.fma && c.f16c)) GTEST_SKIP() << "no AVX2 to compare with";
    if (!GetParam().emulated && simd_level() < SimdLevel::AVX512) GTEST_SKIP() << "this CPU has no AVX-512 level";
  }
};

TEST_P(AttentionAvx512, BitIdenticalToAvx2) {
  std::mt19937 rng(29);
  std::normal_distribution<float> nd(0, 1);
  for (KvStorage st : {KvStorage::F16, KvStorage::F32})
    for (auto [dk, dv] : {std::pair{64, 64}, {72, 72}, {128, 128}, {96, 40}, {8, 24}, {256, 256}})
      for (int rows : {1, 7, 9, 33, 256}) {
        std::vector<uint8_t> k((size_t)rows * kv_row_bytes(st, dk)), v((size_t)rows * kv_row_bytes(st, dv));
        auto fill = [&](std::vector<uint8_t>& b, size_t count, float s) {
          for (size_t i = 0; i < count; ++i) {
            if (st == KvStorage::F32) ((float*)b.data())[i] = nd(rng) * s;
            else ((fp16_t*)b.data())[i] = fp32_to_fp16(nd(rng) * s);
          }
        };
        fill(k, (size_t)rows * dk, 2.0f);
        fill(v, (size_t)rows * dv, 1.0f);
        const KvView view = test::rows_view(st, dk, dv, k.data(), v.data(), rows, 0);
        std::vector<AttnChunk> chunks;
        attn_chunks(view, chunks);
        const AttnChunk& c = chunks.back();
        const int32_t last_tile = c.r0 + (c.r1 - 1 - c.r0) / kAttnTile * kAttnTile;
        for (int n_heads : {1, 2, 3, 4, 5, 7, 9, 48}) {
          std::vector<float> q((size_t)n_heads * dk);
          for (auto& x : q) x = nd(rng);
          std::vector<const float*> qh(n_heads);
          std::vector<int32_t> r1(n_heads);
          for (int h = 0; h < n_heads; ++h) {
            qh[h] = &q[(size_t)h * dk];
            r1[h] = std::max(last_tile + 1, c.r1 - h % 5);  // all within the last tile
          }
          std::vector<float> a(attn_partial_floats(n_heads, dv)), b(a.size());
          ASSERT_TRUE(attend_chunk_heads_avx2(qh.data(), r1.data(), n_heads, view, c, 0.125f, a.data()));
          ASSERT_TRUE(GetParam().fn(qh.data(), r1.data(), n_heads, view, c, 0.125f, b.data()));
          ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
              << kv_storage_name(st) << " dims " << dk << "/" << dv << " rows " << rows << " heads " << n_heads;
        }
      }
}

// Latent views and head dims past the staging buffer stay with the AVX2 kernel.
TEST_P(AttentionAvx512, DeclinesWhatItDoesNotTake) {
  std::vector<uint8_t> k(64 * kv_row_bytes(KvStorage::F16, 512));
  const float q[512] = {};
  const float* qh[1] = {q};
  const int32_t r1[1] = {8};
  std::vector<float> part(attn_partial_floats(1, 512));
  KvView wide = test::rows_view(KvStorage::F16, 264, 264, k.data(), k.data(), 8, 0);
  EXPECT_FALSE(GetParam().fn(qh, r1, 1, wide, AttnChunk{0, 0, 8}, 0.1f, part.data()));
  KvView latent = test::rows_view(KvStorage::F16, 64, 32, k.data(), k.data(), 8, 0);
  latent.v_in_k = true;
  EXPECT_FALSE(GetParam().fn(qh, r1, 1, latent, AttnChunk{0, 0, 8}, 0.1f, part.data()));
}

INSTANTIATE_TEST_SUITE_P(Impls, AttentionAvx512, testing::ValuesIn(kImpls), impl_name);

}  // namespace
