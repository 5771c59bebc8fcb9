// Window (StreamingLLM) caches: ring arithmetic, exactness against the full
// cache and against a naive reference, batch invariance, cache on/off.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "kv/cell_map.h"
#include "kv/kv_policy.h"
#include "model/context.h"
#include "model/generate.h"
#include "ops/rope.h"
#include "naive_llama.h"
#include "tiny_llama.h"
#include "util/error.h"

namespace kvforge {
namespace {

using test::eval_logits;
using test::max_abs_diff;
using test::naive_logits;
using test::TinyLlama;

TEST(CellMap, RingKeepsSinksAndTheLastWindow) {
  const CellMap m{5, 2, 7};
  // Positions 0,1 are sinks; 2..6 fill the ring; 7 evicts 2.
  EXPECT_EQ(m.cell(0), 0);
  EXPECT_EQ(m.cell(6), 6);
  EXPECT_EQ(m.cell(7), 2);
  EXPECT_EQ(m.cell(13), 3);
  CellRun r[3];
  ASSERT_EQ(m.runs(4, r), 1);  // not wrapped: one run, like a full cache
  EXPECT_EQ(r[0].first, 0);
  EXPECT_EQ(r[0].n, 5);
  ASSERT_EQ(m.runs(6, r), 1);
  EXPECT_EQ(r[0].n, 7);
  // q = 9 sees 0,1 and 5..9: cells 0,1 | 5,6 | 2,3,4 (positions 5,6,7,8,9).
  ASSERT_EQ(m.runs(9, r), 3);
  EXPECT_EQ(r[0].first, 0);
  EXPECT_EQ(r[0].n, 2);
  EXPECT_EQ(r[1].first, 5);
  EXPECT_EQ(r[1].n, 2);
  EXPECT_EQ(r[2].first, 2);
  EXPECT_EQ(r[2].n, 3);
  // q = 11 sees 7..11 in cells 2..6: the ring is in order again.
  ASSERT_EQ(m.runs(11, r), 2);
  EXPECT_EQ(r[1].first, 2);
  EXPECT_EQ(r[1].n, 5);
  EXPECT_EQ(m.max_wave(0), 7);
  EXPECT_EQ(m.max_wave(3), 4);
  EXPECT_EQ(m.max_wave(7), 1);
  const CellMap no_sinks{4, 0, 4};
  ASSERT_EQ(no_sinks.runs(5, r), 2);  // positions 2..5: cells 2,3 | 0,1
  EXPECT_EQ(r[0].first, 2);
  EXPECT_EQ(r[1].first, 0);
}

TEST(WindowCache, WindowAtLeastTheTextEqualsFullBitForBit) {
  TinyLlama m(3);
  const auto toks = test::random_tokens(100, m.n_vocab, 7);
  for (const char* kv : {"f16", "f32", "q8"}) {
    const std::string k = kv;
    const auto full = eval_logits(*m.model, "full+" + k, toks);
    EXPECT_EQ(full, eval_logits(*m.model, "window:100,sinks:0+" + k, toks)) << kv;
    EXPECT_EQ(full, eval_logits(*m.model, "window:96,sinks:4+" + k, toks)) << kv;  // sinks + window = length
    EXPECT_EQ(full, eval_logits(*m.model, "window:500+" + k, toks)) << kv;
  }
}

TEST(WindowCache, NaiveReferenceMatchesFullCache) {
  // The reference itself, with nothing masked, against the engine's f32 cache.
  TinyLlama m(5);
  const auto toks = test::random_tokens(50, m.n_vocab, 11);
  const auto ref = naive_logits(m, toks, test::all_visible);
  EXPECT_LT(max_abs_diff(ref, eval_logits(*m.model, "f32", toks)), 2e-3f);
}

TEST(WindowCache, RingWrapAroundEqualsNaiveMaskedReference) {
  // f32 storage and f32 weights: the engine differs from the double-precision
  // reference only by f32 rounding (~1e-6 relative per op); logits are O(10),
  // so 2e-3 absolute is far below the effect of dropping a token (checked).
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  struct Case {
    int W, S;
  };
  for (const Case c : {Case{16, 4}, Case{7, 0}, Case{10, 1}, Case{32, 3}}) {
    const std::string kv = fmt::format("window:{},sinks:{}+f32", c.W, c.S);
    const auto got = eval_logits(*m.model, kv, toks, 64);
    const auto ref = naive_logits(m, toks, [&](int, int, int t, int j) { return j < c.S || j > t - c.W; });
    EXPECT_LT(max_abs_diff(got, ref), 2e-3f) << kv;
    const auto full = naive_logits(m, toks, test::all_visible);
    EXPECT_GT(max_abs_diff(got, full), 0.05f) << kv << ": the window changed nothing, the test would be vacuous";
  }
}

TEST(WindowCache, LogitsIndependentOfBatchSizeAndThreads) {
  TinyLlama m(9);
  const auto toks = test::random_tokens(150, m.n_vocab, 17);
  for (const char* kv : {"window:24,sinks:4", "window:17,sinks:0+f32", "window:40,sinks:2+q8",
                         "window:33+q4,hadamard"}) {
    test::expect_batch_invariant(*m.model, kv, toks);
  }
}

TEST(WindowCache, GeneratesPastTheContextInConstantMemory) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 32;  // ignored by a window cache: it owns sinks + window cells
  p.n_threads = 2;
  p.kv = parse_kv_policy("window:20,sinks:4");
  Context ctx(*m.model, p);
  EXPECT_EQ(ctx.n_ctx(), 24);
  const size_t bytes = ctx.cache().bytes();
  GenerateParams gp;
  gp.n_predict = 300;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  const auto r = generate(ctx, test::random_tokens(10, m.n_vocab, 3), gp, [](const std::string&) {});
  EXPECT_EQ(r.tokens.size(), 300u);
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(ctx.n_past(), 309);
  EXPECT_EQ(ctx.cache().bytes(), bytes);
  EXPECT_EQ(ctx.cache().bytes_used(), bytes);  // every cell in use, none added
}

TEST(FullCache, StopsCleanlyWhenTheContextIsFull) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 32;
  p.n_threads = 2;
  Context ctx(*m.model, p);
  GenerateParams gp;
  gp.n_predict = 100;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  const auto r = generate(ctx, test::random_tokens(10, m.n_vocab, 3), gp, [](const std::string&) {});
  EXPECT_EQ(r.stop_reason, "context full");
  EXPECT_EQ(ctx.n_past(), 32);
  std::vector<float> logits(m.n_vocab);
  const TokenId t = 1;
  try {
    ctx.eval(&t, 1, logits.data());
    FAIL() << "eval past the context succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context full"), std::string::npos) << e.what();
  }
}

TEST(FullCache, ContextShiftKeepsGoingAndMatchesTheShiftedTextRecomputed) {
  TinyLlama m(5);
  ContextParams p;
  p.n_ctx = 32;
  p.n_threads = 2;
  GenerateParams gp;
  gp.n_predict = 100;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  gp.sampling.repeat_penalty = 3.0f;  // the random tiny model otherwise repeats one token
  gp.context_shift = true;
  gp.n_keep = 4;
  const auto prompt = test::random_tokens(10, m.n_vocab, 3);
  Context on(*m.model, p);
  const auto r = generate(on, prompt, gp, [](const std::string&) {});
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(r.tokens.size(), 100u);
  // 10 + 99 evaluated tokens through 32 cells: kept 4 + 14, so a shift every 14 tokens.
  EXPECT_GE(r.n_shifts, 5);
  EXPECT_LE(on.n_past(), 32);
  // Cache off recomputes the same shifted text from scratch at every step.
  gp.use_cache = false;
  Context off(*m.model, p);
  const auto r_off = generate(off, prompt, gp, [](const std::string&) {});
  EXPECT_EQ(r.tokens, r_off.tokens);
  EXPECT_EQ(r.n_shifts, r_off.n_shifts);
  // And the text differs from what an unbounded context gives: the shift really drops tokens.
  p.n_ctx = 256;
  gp.use_cache = true;
  Context big(*m.model, p);
  EXPECT_NE(generate(big, prompt, gp, [](const std::string&) {}).tokens, r.tokens);
}

// Greedy generation with the cache equals recomputing the history every step.
TEST(KvPolicies, CacheOnOffGenerationIsIdentical) {
  TinyLlama m(4);
  const auto prompt = test::random_tokens(20, m.n_vocab, 5);
  for (const char* kv : {"window:12,sinks:4", "window:30,sinks:2+q8", "q8", "q4,hadamard", "full",
                         "heads:full:0-1/1-0,sinks:2,recent:5", "heads:random:2,sparsity:0.5,sinks:1,recent:6+q8"}) {
    std::vector<TokenId> out[2];
    for (int use_cache = 0; use_cache < 2; ++use_cache) {
      ContextParams p;
      p.n_ctx = 128;
      p.n_threads = 2;
      p.kv = parse_kv_policy(kv);
      Context ctx(*m.model, p);
      GenerateParams gp;
      gp.n_predict = 60;
      gp.ignore_eos = true;
      gp.use_cache = use_cache;
      gp.sampling.temperature = 0;
      out[use_cache] = generate(ctx, prompt, gp, [](const std::string&) {}).tokens;
    }
    EXPECT_EQ(out[0].size(), 60u) << kv;
    EXPECT_EQ(out[0], out[1]) << kv;
  }
}

}  // namespace
}  // namespace kvforge
