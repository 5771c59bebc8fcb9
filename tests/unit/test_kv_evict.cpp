// Token eviction (H2O, SnapKV): cells that hold any position, the policies
// against slow double-precision references that keep the same tokens, exact
// equality with the full cache when nothing is dropped, batch invariance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "kv/cell_table.h"
#include "kv/evict_select.h"
#include "kv/kv_policy.h"
#include "kv_test_view.h"
#include "model/context.h"
#include "ops/attention_weights.h"
#include "ops/ggml_types.h"
#include "ops/hadamard.h"
#include "ops/quantize.h"
#include "naive_llama.h"
#include "simd_levels.h"
#include "tiny_llama.h"
#include "util/error.h"

namespace kvforge {
namespace {

using test::eval_logits;
using test::max_abs_diff;
using test::naive_logits;
using test::TinyLlama;

TEST(CellTable, AppendsDropsAndCompactsInPositionOrder) {
  CellTable t(2, 6);
  for (int32_t p : {0, 1, 2, 5, 7, 9}) t.append(0, p);
  EXPECT_EQ(t.free(0), 0);
  EXPECT_EQ(t.free(1), 6);
  EXPECT_EQ(t.visible(0, 4), 3);  // positions 0, 1, 2
  EXPECT_EQ(t.visible(0, 5), 4);
  EXPECT_THROW(t.append(0, 10), Error);  // full
  // Drop cells 1 and 3 (positions 1 and 5): two moves close the gaps.
  const CellDrop d = t.plan_drop(0, {0, 1, 0, 1, 0, 0});
  ASSERT_EQ(d.moves.size(), 2u);
  EXPECT_EQ(d.moves[0].src, 2);
  EXPECT_EQ(d.moves[0].dst, 1);
  EXPECT_EQ(d.moves[0].n, 1);
  EXPECT_EQ(d.moves[1].src, 4);
  EXPECT_EQ(d.moves[1].dst, 2);
  EXPECT_EQ(d.moves[1].n, 2);
  EXPECT_EQ(t.used(0), 6);  // planning changes nothing
  t.apply(0, d);
  EXPECT_EQ(std::vector<int32_t>(t.positions(0), t.positions(0) + t.used(0)), (std::vector<int32_t>{0, 2, 7, 9}));
  std::vector<int> data{10, 11, 12, 13, 14, 15};
  apply_moves(data.data(), d.moves);
  EXPECT_EQ(std::vector<int>(data.begin(), data.begin() + 4), (std::vector<int>{10, 12, 14, 15}));
  EXPECT_EQ(t.visible(0, 8), 3);
  EXPECT_THROW(t.append(0, 9), Error);  // positions must increase
  t.append(0, 11);
  EXPECT_EQ(t.used(0), 5);
}

TEST(EvictSelect, H2oKeepsRecentAndDropsTheLightestOldest) {
  const int32_t pos[] = {0, 1, 2, 3, 4};
  const float score[] = {0.5f, 0.2f, 0.2f, 0.1f, 0.0f};
  EXPECT_EQ(h2o_victim(pos, score, 5, 5, 2), 3);  // 4 and 5 are recent
  EXPECT_EQ(h2o_victim(pos, score, 5, 5, 3), 1);  // 3, 4, 5 recent: tie 1/2 -> the oldest
  EXPECT_EQ(h2o_victim(pos, score, 5, 5, 6), -1);
}

TEST(EvictSelect, SnapKvPoolsThePrefixAndKeepsTheWindow) {
  // Prefix 0..5, window 6..7; pool 3: pooled = {3, 3, 1, 1, 2, 2} (a tie: the lower cell).
  const float score[] = {3, 0, 1, 0, 0, 2, 9, 9};
  const auto drop = snapkv_drop(score, 8, 5, 2, 3);  // keep 3 prefix cells + 2
  EXPECT_EQ(drop, (std::vector<uint8_t>{0, 0, 1, 1, 0, 1, 0, 0}));
  EXPECT_EQ(snapkv_drop(score, 8, 5, 2, 1), (std::vector<uint8_t>{0, 1, 0, 1, 1, 0, 0, 0}));
}

TEST(KvEvictPolicy, ParsesDescribesAndRejects) {
  const KvPolicy h = parse_kv_policy("h2o:256+q8");
  EXPECT_EQ(h.evict.kind, KvEviction::Kind::H2O);
  EXPECT_EQ(h.evict.budget, 256);
  EXPECT_EQ(h.evict.recent, 128);
  EXPECT_EQ(h.describe(), "h2o:256,recent:128+q8");
  EXPECT_EQ(parse_kv_policy(h.describe()), h);
  const KvPolicy s = parse_kv_policy("snapkv:100,window:16,pool:5");
  EXPECT_EQ(s.describe(), "snapkv:100,window:16,pool:5+f16");
  EXPECT_EQ(parse_kv_policy(s.describe()), s);
  EXPECT_EQ(parse_kv_policy("snapkv:64").evict.window, 32);
  for (const char* bad : {"h2o:8,recent:8", "h2o:0", "h2o:8,window:2", "snapkv:32", "snapkv:64,pool:4",
                          "snapkv:64,recent:3", "h2o:64+window:8", "window:8+h2o:64", "h2o:x"})
    EXPECT_THROW(parse_kv_policy(bad), Error) << bad;
  TinyLlama m(1);
  ContextParams p;
  p.n_ctx = 64;
  p.kv = parse_kv_policy("h2o:65");
  try {
    Context ctx(*m.model, p);
    FAIL() << "a budget above the context was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the context size"), std::string::npos) << e.what();
  }
}

// Cells == positions when nothing is dropped: one run per view, read by the
// same kernel as the full cache's at every SIMD level and storage.
TEST(KvEvict, BudgetAtLeastTheTextEqualsFullBitForBit) {
  TinyLlama m(3);
  const auto toks = test::random_tokens(100, m.n_vocab, 7);
  for (SimdLevel level : simd_levels()) {
    ScopedSimdLevel at(level);
    for (const char* st : {"f16", "f32", "q8", "q4,hadamard"}) {
      const std::string k = st;
      const auto full = eval_logits(*m.model, "full+" + k, toks);
      EXPECT_EQ(full, eval_logits(*m.model, "h2o:100,recent:10+" + k, toks)) << st << " level " << (int)level;
      EXPECT_EQ(full, eval_logits(*m.model, "h2o:300+" + k, toks, 7)) << st << " level " << (int)level;
      EXPECT_EQ(full, eval_logits(*m.model, "snapkv:100+" + k, toks)) << st << " level " << (int)level;
    }
  }
}

TEST(KvEvict, H2oIsIndependentOfBatchSplitAndThreads) {
  TinyLlama m(9);
  const auto toks = test::random_tokens(120, m.n_vocab, 17);
  for (const char* kv : {"h2o:24,recent:8", "h2o:40,recent:0+f32", "h2o:33,recent:5+q8"}) {
    const auto base = eval_logits(*m.model, kv, toks, 1, 512, 1);
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 3)) << kv;
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 64, 512, 3)) << kv;
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 256)) << kv;
    EXPECT_NE(base, eval_logits(*m.model, "full", toks)) << kv << ": nothing dropped, the test would be vacuous";
  }
}

// H2O on the naive forward pass, in double: per (layer, KV head) the kept
// positions and their accumulated attention (summed over the query group).
struct RefH2O {
  int budget, recent, n_kv, group;
  struct Lane {
    std::vector<int> kept;  // positions, increasing
    std::map<int, double> score;
    int last_t = -1;
  };
  std::vector<Lane> lanes;  // [n_layer][n_kv]
  RefH2O(const TinyLlama& m, int b, int r)
      : budget(b), recent(r), n_kv(m.n_kv_head), group(m.n_head / m.n_kv_head), lanes((size_t)m.n_layer * n_kv) {}
  bool visible(int l, int kh, int t, int j) {
    Lane& L = lanes[(size_t)l * n_kv + kh];
    if (L.last_t != t) {  // token t arrives: drop the lightest older token when full
      L.last_t = t;
      if ((int)L.kept.size() == budget) {
        int victim = -1;
        for (int p : L.kept)
          if (p <= t - recent && (victim < 0 || L.score[p] < L.score[victim])) victim = p;
        L.kept.erase(std::find(L.kept.begin(), L.kept.end(), victim));
      }
      L.kept.push_back(t);
      L.score[t] = 0;
    }
    return std::binary_search(L.kept.begin(), L.kept.end(), j);
  }
  void hook(int l, int qh, int, int j, double w) { lanes[(size_t)l * n_kv + qh / group].score[j] += w; }
};

// f32 rows and f32 weights: the engine differs from the double reference by
// f32 rounding only (logits O(10), differences ~1e-5), far below what one
// dropped token changes (checked against the full history).
TEST(KvEvict, H2oKeepsWhatTheNaiveReferenceKeeps) {
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  for (auto [b, r] : {std::pair{24, 8}, std::pair{16, 0}, std::pair{30, 20}}) {
    const std::string kv = fmt::format("h2o:{},recent:{}+f32", b, r);
    RefH2O ref(m, b, r);
    const auto want = naive_logits(
        m, toks, [&](int l, int kh, int t, int j) { return ref.visible(l, kh, t, j); }, {},
        [&](int l, int qh, int t, int j, double w) { ref.hook(l, qh, t, j, w); });
    const auto got = eval_logits(*m.model, kv, toks, 32);
    EXPECT_LT(max_abs_diff(got, want), 2e-3f) << kv;
    EXPECT_GT(max_abs_diff(got, naive_logits(m, toks, test::all_visible)), 0.05f) << kv << ": vacuous";
  }
}

// SnapKV: a prompt, then a second input that sees what the prompt's last
// `window` queries chose (their weights summed per position over the query
// group, max-pooled over the prefix, top budget - window) plus itself.
TEST(KvEvict, SnapKvKeepsWhatTheNaiveReferenceKeeps) {
  TinyLlama m(6);
  const int n = 60, extra = 12, n_kv = m.n_kv_head, group = m.n_head / m.n_kv_head;
  const auto toks = test::random_tokens(n + extra, m.n_vocab, 21);
  for (auto [b, w, k] : {std::tuple{24, 8, 3}, std::tuple{20, 4, 1}, std::tuple{40, 16, 7}}) {
    const std::string kv = fmt::format("snapkv:{},window:{},pool:{}+f32", b, w, k);
    std::vector<std::map<int, double>> votes((size_t)m.n_layer * n_kv);
    std::vector<std::set<int>> kept((size_t)m.n_layer * n_kv);
    auto choose = [&](int lane) {  // the reference selection, once the prompt's votes are in
      if (!kept[lane].empty()) return;
      const int prefix = n - w;
      std::vector<double> pooled(prefix);
      for (int i = 0; i < prefix; ++i) {
        pooled[i] = -1;
        for (int j = std::max(0, i - k / 2); j <= std::min(prefix - 1, i + k / 2); ++j)
          pooled[i] = std::max(pooled[i], votes[lane][j]);
      }
      std::vector<int> order(prefix);
      for (int i = 0; i < prefix; ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return pooled[a] > pooled[c]; });
      for (int i = 0; i < b - w; ++i) kept[lane].insert(order[i]);
    };
    const auto want = naive_logits(
        m, toks,
        [&](int l, int kh, int t, int j) {
          if (t < n || j >= n - w) return true;
          choose(l * n_kv + kh);
          return kept[(size_t)l * n_kv + kh].count(j) > 0;
        },
        {},
        [&](int l, int qh, int t, int j, double wt) {
          if (t >= n - w && t < n) votes[(size_t)l * n_kv + qh / group][j] += wt;
        });
    ContextParams p;
    p.n_ctx = 128;
    p.n_threads = 2;
    p.kv = parse_kv_policy(kv);
    Context ctx(*m.model, p);
    std::vector<float> got((size_t)(n + extra) * m.n_vocab);
    ctx.eval(toks.data(), n, got.data(), true);
    EXPECT_EQ(ctx.cache().bytes_used(), (size_t)b * ctx.cache().bytes_per_token()) << kv;
    ctx.eval(toks.data() + n, extra, got.data() + (size_t)n * m.n_vocab, true);
    EXPECT_LT(max_abs_diff(got, want), 2e-3f) << kv;
    const auto full = naive_logits(m, toks, test::all_visible);
    EXPECT_GT(max_abs_diff(got, full), 0.05f) << kv << ": vacuous";
  }
}

TEST(KvEvict, H2oGeneratesPastItsBudgetInConstantMemory) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 64;
  p.n_threads = 2;
  p.kv = parse_kv_policy("h2o:20,recent:6");
  Context ctx(*m.model, p);
  EXPECT_EQ(ctx.n_ctx(), 20);
  const auto toks = test::random_tokens(200, m.n_vocab, 3);
  std::vector<float> logits(m.n_vocab);
  ctx.eval(toks.data(), 150, logits.data());
  for (int i = 150; i < 200; ++i) ctx.eval(&toks[i], 1, logits.data());
  EXPECT_EQ(ctx.n_past(), 200);
  EXPECT_EQ(ctx.cache().bytes_used(), ctx.cache().bytes());
  EXPECT_EQ(ctx.cache().bytes(), 20 * ctx.cache().bytes_per_token());
}

// The weights eviction scores by: rows scored several at a time (one row's
// dot product still adds its terms in order) give the bits of the plain
// loop, one row at a time, for every storage, soft cap and ragged tail.
TEST(AttentionWeights, RowsTogetherEqualOneRowAtATime) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  const int dk = 64, group = 3;
  for (KvStorage st : {KvStorage::F16, KvStorage::F32, KvStorage::Q8_0, KvStorage::Q4_0})
    for (auto [n1, n2] : {std::pair{1, 0}, {7, 0}, {13, 6}, {130, 21}})
      for (float cap : {0.0f, 5.0f}) {
        const int n = n1 + n2;
        const size_t row = kv_row_bytes(st, dk);
        std::vector<uint8_t> k((size_t)n * row);
        std::vector<float> x(dk), q((size_t)group * dk), kf(dk);
        for (int r = 0; r < n; ++r) {
          for (float& v : x) v = 2.0f * nd(rng);
          quantize_row(kv_storage_type(st), x.data(), k.data() + (size_t)r * row, dk);
        }
        for (float& v : q) v = nd(rng);
        const KvView view = test::rows_view(st, dk, dk, k.data(), k.data(), n1, n2, st == KvStorage::Q4_0);
        const float scale = 0.125f;
        std::vector<float> got(n, 0.5f), want(n, 0.5f);
        attn_weights_add(q.data(), group, view, scale, cap, got.data());
        std::vector<float> qr = q;
        if (view.hadamard_block)
          for (int g = 0; g < group; ++g) hadamard_rotate(&qr[(size_t)g * dk], dk, view.hadamard_block);
        for (int g = 0; g < group; ++g) {
          std::vector<float> s(n);
          for (int r = 0; r < n; ++r) {
            dequantize_row(kv_storage_type(st), k.data() + (size_t)r * row, kf.data(), dk);
            float d = 0;
            for (int e = 0; e < dk; ++e) d += qr[(size_t)g * dk + e] * kf[e];
            d *= scale;
            s[r] = cap > 0 ? cap * std::tanh(d / cap) : d;
          }
          const float m = *std::max_element(s.begin(), s.end());
          float l = 0;
          for (float& v : s) l += v = std::exp(v - m);
          for (int r = 0; r < n; ++r) want[r] += s[r] / l;
        }
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n * sizeof(float)))
            << kv_storage_name(st) << " rows " << n1 << "+" << n2 << " cap " << cap;
      }
}

}  // namespace
}  // namespace kvforge
