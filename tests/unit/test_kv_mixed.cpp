// Per-head mixed caches and soft gates through the forward pass: exactness
// against `full` and against a naive masked-attention reference that gives
// each head its own visible set, batch invariance, cache on/off.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "kv/kv_policy.h"
#include "model/context.h"
#include "naive_llama.h"
#include "tiny_llama.h"
#include "util/error.h"

namespace kvforge {
namespace {

using test::eval_logits;
using test::max_abs_diff;
using test::naive_logits;
using test::TinyLlama;

// TinyLlama: 2 layers x 2 KV heads. Heads 0-1 and 1-0 full, 0-0 and 1-1 stream.
const char* kMixed = "heads:full:0-1/1-0,sinks:2,recent:5";
bool mixed_full(int l, int h) { return (l == 0 && h == 1) || (l == 1 && h == 0); }
// Per layer, as Gemma's interleaved window layers: layer 0 full, layer 1 streaming.
const char* kLayerMixed = "heads:full:0-0/0-1,sinks:2,recent:5";

TEST(MixedCache, EveryHeadFullEqualsFullBitForBit) {
  TinyLlama m(3);
  const auto toks = test::random_tokens(100, m.n_vocab, 7);
  for (const char* st : {"f16", "f32", "q8"}) {
    const std::string s = st;
    const auto full = eval_logits(*m.model, "full+" + s, toks);
    EXPECT_EQ(full, eval_logits(*m.model, "heads:full:0-0/0-1/1-0/1-1+" + s, toks)) << st;
    EXPECT_EQ(full, eval_logits(*m.model, "heads:random:3,sparsity:0+" + s, toks)) << st;
    // Streaming heads whose sinks + recent cover the text are full heads too.
    EXPECT_EQ(full, eval_logits(*m.model, "heads:random:3,sparsity:1,sinks:4,recent:96+" + s, toks)) << st;
  }
}

TEST(MixedCache, EqualsNaiveReferenceWithPerHeadVisibility) {
  // f32 storage: the engine differs from the double reference only by f32
  // rounding; 2e-3 on O(10) logits (as for the window caches), far below
  // what dropping the tokens changes (checked).
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  const auto got = eval_logits(*m.model, std::string(kMixed) + "+f32", toks, 64);
  const auto ref = naive_logits(m, toks, [](int l, int h, int t, int j) { return mixed_full(l, h) || j < 2 || j > t - 5; });
  EXPECT_LT(max_abs_diff(got, ref), 2e-3f);
  EXPECT_GT(max_abs_diff(got, naive_logits(m, toks, test::all_visible)), 0.05f) << "streaming heads changed nothing";
  // Not the same as streaming everywhere either: the full heads matter.
  EXPECT_GT(max_abs_diff(got, eval_logits(*m.model, "window:5,sinks:2+f32", toks, 64)), 0.05f);
}

TEST(MixedCache, PerLayerWindowsEqualNaiveReference) {
  // Whole layers streaming: each layer takes its own waves (the full layer
  // the whole batch, the streaming one a token per wave once its ring is
  // full); the result is the naive reference's (tolerance as above).
  TinyLlama m(6);
  const auto toks = test::random_tokens(90, m.n_vocab, 21);
  const auto got = eval_logits(*m.model, std::string(kLayerMixed) + "+f32", toks, 64);
  const auto ref = naive_logits(m, toks, [](int l, int, int t, int j) { return l == 0 || j < 2 || j > t - 5; });
  EXPECT_LT(max_abs_diff(got, ref), 2e-3f);
}

TEST(MixedCache, LogitsIndependentOfBatchSizeAndThreads) {
  TinyLlama m(9);
  const auto toks = test::random_tokens(150, m.n_vocab, 17);
  for (std::string kv : {std::string(kMixed), std::string(kMixed) + "+q8", std::string("heads:random:1,sparsity:0.5,sinks:0,recent:17+f32"),
                         std::string(kMixed) + "+q4,hadamard", std::string(kLayerMixed)}) {
    test::expect_batch_invariant(*m.model, kv, toks);
  }
}

TEST(MixedCache, FullHeadsTakeTheWholeBatchInOneWave) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 256;
  p.kv = parse_kv_policy(kMixed);
  Context ctx(*m.model, p);
  const auto toks = test::random_tokens(40, m.n_vocab, 1);
  std::vector<float> logits(m.n_vocab);
  ctx.eval(toks.data(), 40, logits.data());
  const KvCache& c = ctx.cache();
  EXPECT_GE(c.max_wave(0, 1, 40), 200);  // full head: anything that fits
  EXPECT_EQ(c.max_wave(0, 0, 40), 1);    // its streaming neighbour, ring full
  EXPECT_EQ(c.bytes(), 2 * (256 + 7) * 2 * (32 * 2));
}

// All logits with soft gates alpha (set at run time), in batches of n_batch.
std::vector<float> gated_logits(const Model& m, const std::string& kv, const std::vector<float>& alpha,
                                const std::vector<TokenId>& toks, int32_t n_batch, int sinks = 2, int recent = 5) {
  ContextParams p;
  p.n_ctx = 256;
  p.n_batch = n_batch;
  p.n_threads = 2;
  p.kv = parse_kv_policy(kv);
  Context ctx(m, p);
  ctx.set_gates(alpha, sinks, recent);
  std::vector<float> logits(toks.size() * m.config().n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), logits.data(), true);
  return logits;
}

TEST(SoftGates, OneIsFullBitForBitAndZeroIsStreaming) {
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  for (const char* st : {"f32", "f16", "q8"}) {
    EXPECT_EQ(gated_logits(*m.model, st, {1, 1, 1, 1}, toks, 64), eval_logits(*m.model, st, toks, 64)) << st;
  }
  // alpha = 0: every head sees the sinks and the recent rows only, as a
  // window cache does (the rows come in other runs, so up to f32 rounding).
  const auto zero = gated_logits(*m.model, "f32", {0, 0, 0, 0}, toks, 64);
  EXPECT_LT(max_abs_diff(zero, eval_logits(*m.model, "window:5,sinks:2+f32", toks)), 1e-4f);
  EXPECT_LT(max_abs_diff(zero, naive_logits(m, toks, [](int, int, int t, int j) { return j < 2 || j > t - 5; })), 2e-3f);
  // A streaming view from the full storage equals mixing by gate 0/1.
  EXPECT_EQ(gated_logits(*m.model, "f32", {0, 1, 1, 0}, toks, 64), gated_logits(*m.model, "f32", {0, 1, 1, 0}, toks, 1));
}

TEST(SoftGates, BlendEqualsNaiveReferenceAndIsBatchInvariant) {
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  const std::vector<float> alpha{0.25f, 1.0f, 0.0f, 0.7f};
  const auto got = gated_logits(*m.model, "f32", alpha, toks, 64);
  const auto ref = naive_logits(m, toks, test::all_visible,
                                [&](int l, int h) { return test::Gate{alpha[l * 2 + h], 2, 5}; });
  EXPECT_LT(max_abs_diff(got, ref), 2e-3f);
  EXPECT_GT(max_abs_diff(got, eval_logits(*m.model, "f32", toks)), 0.05f);
  // Batch split, prefill vs decode (1 token: the split attention path).
  EXPECT_EQ(got, gated_logits(*m.model, "f32", alpha, toks, 1));
  EXPECT_EQ(got, gated_logits(*m.model, "f32", alpha, toks, 7));
  // From a gate file via --kv gates:FILE.
  const std::string path = "/tmp/kvforge_gates_" + std::to_string(getpid()) + ".tsv";
  {
    std::ofstream f(path);
    f << "0.25\t1\n0\t0.7\n";
  }
  ContextParams p;
  p.n_ctx = 256;
  p.kv = parse_kv_policy("gates:" + path + ",sinks:2,recent:5+f32");
  Context ctx(*m.model, p);
  std::vector<float> logits(toks.size() * m.n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), logits.data(), true);
  unlink(path.c_str());
  EXPECT_EQ(logits, got);
}

TEST(SoftGates, BadGatesAreRejected) {
  TinyLlama m(5);
  ContextParams p;
  p.n_ctx = 64;
  Context full(*m.model, p);
  EXPECT_THROW(full.set_gates({1, 1, 1}, 2, 5), Error);         // wrong count
  EXPECT_THROW(full.set_gates({1, 1, 1, 1.5f}, 2, 5), Error);   // outside [0, 1]
  EXPECT_THROW(full.set_gates({1, 1, 1, 1}, 2, 0), Error);      // no recent rows
  p.kv = parse_kv_policy(kMixed);
  Context mixed(*m.model, p);
  EXPECT_THROW(mixed.set_gates({1, 1, 1, 1}, 2, 5), Error);     // streaming heads have no full history
}

}  // namespace
}  // namespace kvforge
