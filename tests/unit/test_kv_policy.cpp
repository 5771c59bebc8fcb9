// --kv grammar, layouts and byte accounting.
#include <gtest/gtest.h>

#include "kv/kv_layout.h"
#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvforge {
namespace {

const KvShape kSmolLM2{30, 3, 64, 64};  // SmolLM2-135M: 30 layers, 3 KV heads of 64

std::string error_of(const std::string& spec) {
  try {
    parse_kv_policy(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(KvPolicy, ParsesValidSpecs) {
  EXPECT_EQ(parse_kv_policy("full"), KvPolicy{});
  EXPECT_EQ(parse_kv_policy("f32"), (KvPolicy{0, 0, KvStorage::F32, false}));
  EXPECT_EQ(parse_kv_policy("window:64"), (KvPolicy{64, 4, KvStorage::F16, false}));
  EXPECT_EQ(parse_kv_policy("window:1024,sinks:0"), (KvPolicy{1024, 0, KvStorage::F16, false}));
  EXPECT_EQ(parse_kv_policy("window:1024,sinks:4+q8"), (KvPolicy{1024, 4, KvStorage::Q8_0, false}));
  EXPECT_EQ(parse_kv_policy("q4,hadamard"), (KvPolicy{0, 0, KvStorage::Q4_0, true}));
  EXPECT_EQ(parse_kv_policy("hadamard+q8+window:16,sinks:2"), (KvPolicy{16, 2, KvStorage::Q8_0, true}));
  EXPECT_EQ(parse_kv_policy("full+q4+hadamard"), (KvPolicy{0, 0, KvStorage::Q4_0, true}));
}

TEST(KvPolicy, DescribeIsCanonicalAndRoundTrips) {
  EXPECT_EQ(parse_kv_policy("full").describe(), "full+f16");
  EXPECT_EQ(parse_kv_policy("q8+window:64").describe(), "window:64,sinks:4+q8");
  EXPECT_EQ(parse_kv_policy("hadamard+q4").describe(), "full+q4,hadamard");
  for (const char* s : {"full", "f32", "window:7,sinks:0+f32", "window:1024+q8,hadamard", "q4", "window:3,sinks:9"}) {
    const KvPolicy p = parse_kv_policy(s);
    EXPECT_EQ(parse_kv_policy(p.describe()), p) << s;
  }
}

TEST(KvPolicy, RejectsNonsenseNamingThePart) {
  struct Case {
    const char* spec;
    const char* must_mention;
  };
  const Case cases[] = {
      {"", "empty"},
      {"fulll", "'fulll'"},
      {"window", "'window'"},
      {"window:", "'window:'"},
      {"window:0", "'window:0'"},
      {"window:-5", "'window:-5'"},
      {"window:12abc", "'window:12abc'"},
      {"window:99999999999", "'window:99999999999'"},
      {"window:64,sinks:-1", "'sinks:-1'"},
      {"window:64,sink:4", "'sink:4'"},
      {"window:64,sinks:4,sinks:2", "'sinks:2'"},
      {"sinks:4", "'sinks:4'"},
      {"full+window:64", "'window:64'"},
      {"q8+q4", "'q4'"},
      {"q8++full", "stray '+'"},
      {"q8,", "stray ','"},
      {"f16,hadamard", "hadamard"},
      {"hadamard", "hadamard"},
      {"q8,fast", "'fast'"},
      {"full,sinks:4", "'sinks:4'"},
      {"q8,hadamard+hadamard", "twice"},
      {"Q8", "'Q8'"},
  };
  for (const Case& c : cases) {
    const std::string e = error_of(c.spec);
    EXPECT_NE(e, "") << "accepted: " << c.spec;
    EXPECT_NE(e.find(c.must_mention), std::string::npos) << c.spec << " -> " << e;
  }
}

TEST(KvLayout, ResolvesPerHeadAndChecksTheModel) {
  const KvLayout L = resolve_kv_layout(parse_kv_policy("window:100,sinks:4+q8"), kSmolLM2, 4096);
  ASSERT_EQ(L.heads.size(), 90u);
  EXPECT_TRUE(L.uniform());
  EXPECT_EQ(L.head(29, 2).n_cells, 104);
  EXPECT_EQ(L.head(0, 0).storage, KvStorage::Q8_0);
  EXPECT_EQ(resolve_kv_layout(KvPolicy{}, kSmolLM2, 512).head(3, 1).n_cells, 512);
  // Block formats need head dims that are multiples of 32.
  EXPECT_THROW(resolve_kv_layout(parse_kv_policy("q8"), KvShape{2, 2, 48, 48}, 64), Error);
  EXPECT_NO_THROW(resolve_kv_layout(parse_kv_policy("q4,hadamard"), KvShape{2, 2, 96, 96}, 64));  // blocks of 32
  EXPECT_NO_THROW(resolve_kv_layout(parse_kv_policy("f16"), KvShape{2, 2, 48, 48}, 64));
}

// A model's sliding-window layer (Gemma, Phi-3) keeps only its window: it
// replaces a longer full history or a wider --kv window (sinks dropped, as
// the model sees none), never a narrower --kv window, and a full history
// that fits in the window stays as it is.
TEST(KvLayout, ModelWindowLimitsItsLayer) {
  KvLayout L = resolve_kv_layout(KvPolicy{}, KvShape{3, 2, 32, 32}, 1000);
  limit_layer_window(L, 0, 64);
  limit_layer_window(L, 1, 0);
  limit_layer_window(L, 2, 4096);
  EXPECT_EQ(L.head(0, 1), (KvHeadSpec{64, 0, KvStorage::F16, false, 64}));
  EXPECT_EQ(L.head(1, 0).n_cells, 1000);
  EXPECT_EQ(L.head(2, 0), (KvHeadSpec{0, 0, KvStorage::F16, false, 1000}));
  EXPECT_EQ(make_kv_cache(L)->bytes(), (size_t)(64 + 1000 + 1000) * 2 * 2 * 32 * 2);

  KvLayout W = resolve_kv_layout(parse_kv_policy("window:100,sinks:4+q8"), KvShape{2, 2, 32, 32}, 1000);
  limit_layer_window(W, 0, 16);
  limit_layer_window(W, 1, 500);
  EXPECT_EQ(W.head(0, 0), (KvHeadSpec{16, 0, KvStorage::Q8_0, false, 16}));
  EXPECT_EQ(W.head(1, 1), (KvHeadSpec{100, 4, KvStorage::Q8_0, false, 104}));
}

TEST(KvLayout, MixedLayoutsGetSeparateStorage) {
  // The shape of an RLKV/DuoAttention cache: some heads full, others streaming.
  KvLayout L = resolve_kv_layout(KvPolicy{}, KvShape{2, 2, 32, 32}, 1000);
  L.heads[1] = KvHeadSpec{16, 4, KvStorage::Q8_0, false, 20};
  L.heads[3] = KvHeadSpec{64, 16, KvStorage::F16, false, 80};
  auto c = make_kv_cache(L);
  const size_t f16_row = 32 * 2, q8_row = 34;
  EXPECT_EQ(c->bytes(), 2 * (1000 * 2 * f16_row) + 20 * 2 * q8_row + 80 * 2 * f16_row);
  EXPECT_EQ(c->bytes_per_token(), 3 * 2 * f16_row + 2 * q8_row);
  EXPECT_EQ(c->capacity(), 1000);
  EXPECT_EQ(c->room(), 1000);  // the full heads bound the text
}

TEST(KvCacheBytes, ExactForEveryPolicy) {
  struct Case {
    const char* spec;
    size_t per_token;  // SmolLM2-135M
    int32_t cells;
  };
  // Per (layer, head, token) a K row and a V row of 64 elements:
  // f16 2*64*2 = 256 B, f32 512 B, q8 2 blocks * 34 B * 2 = 136 B, q4 2 * 18 * 2 = 72 B.
  const Case cases[] = {
      {"full", 23040, 4096},        {"f32", 46080, 4096},
      {"q8", 12240, 4096},          {"q4", 6480, 4096},
      {"q8,hadamard", 12240, 4096}, {"window:1024,sinks:4", 23040, 1028},
      {"window:64+q4", 6480, 68},   {"window:60,sinks:0+q8", 12240, 60},
  };
  for (const Case& c : cases) {
    auto kv = make_kv_cache(parse_kv_policy(c.spec), kSmolLM2, 4096);
    EXPECT_EQ(kv->bytes_per_token(), c.per_token) << c.spec;
    EXPECT_EQ(kv->capacity(), c.cells) << c.spec;
    EXPECT_EQ(kv->bytes(), c.per_token * c.cells) << c.spec;
    EXPECT_EQ(kv->bytes_used(), 0u) << c.spec;
  }
  EXPECT_EQ(make_kv_cache(KvPolicy{}, kSmolLM2, 23)->bytes(), 23u * 23040);
}

TEST(KvCacheBytes, UsedGrowsThenStaysConstantForWindows) {
  auto full = make_kv_cache(parse_kv_policy("full"), kSmolLM2, 200);
  auto win = make_kv_cache(parse_kv_policy("window:16,sinks:4"), kSmolLM2, 200);
  for (int32_t n = 1; n <= 100; ++n) {
    for (KvCache* c : {full.get(), win.get()}) {
      const KvPlan p = c->plan(1);
      c->commit(p);
    }
    EXPECT_EQ(full->bytes_used(), (size_t)n * 23040);
    EXPECT_EQ(win->bytes_used(), (size_t)std::min(n, 20) * 23040);
  }
  EXPECT_EQ(full->room(), 100);
  EXPECT_GT(win->room(), 1000000);
  EXPECT_EQ(win->bytes(), 20u * 23040);
}

}  // namespace
}  // namespace kvforge
