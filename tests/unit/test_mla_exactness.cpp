// The exactness contract on a tiny random MLA + MoE model (tiny_deepseek2.h: one
// dense layer, then mixture-of-experts layers with shared experts and a
// selection bias): logits bit-identical whatever the prefill batch size and
// thread count, and cached generation equal to recomputation, with latent
// caches in f16, q8 and a window; the latent cache's bytes per token.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "model/context.h"
#include "model/generate.h"
#include "tiny_deepseek2.h"
#include "tiny_model.h"
#include "util/error.h"

using namespace kvforge;
using namespace kvforge::testing;

namespace {

using namespace kvforge::testing::tiny_deepseek2;

std::vector<TokenId> some_tokens(int n) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) t.push_back((TokenId)((i * 37 + 11) % 256));
  return t;
}

std::vector<float> all_logits(const Model& m, const std::vector<TokenId>& toks, const std::string& kv, int batch,
                              int threads, MlaAttn path = MlaAttn::Absorbed) {
  ContextParams p;
  p.n_ctx = 256;
  p.n_batch = batch;
  p.n_threads = threads;
  p.kv = parse_kv_policy(kv);
  p.mla_attn = path;
  Context ctx(m, p);
  std::vector<float> out(toks.size() * m.config().n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), out.data(), true);
  return out;
}

class TinyMla : public ::testing::TestWithParam<bool> {};  // q_lora

// Both attention paths (--mla-attn absorbed, naive) keep the contract.
const MlaAttn kPaths[] = {MlaAttn::Absorbed, MlaAttn::Naive};

TEST_P(TinyMla, LogitsIndependentOfBatchAndThreads) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_exact.gguf"), GetParam()));
  const auto toks = some_tokens(70);
  for (MlaAttn path : kPaths)
    for (const char* kv : {"f16", "q8", "window:20,sinks:4+f16"}) {
      const auto base = all_logits(*m, toks, kv, 256, 1, path);
      for (auto [batch, threads] : std::vector<std::pair<int, int>>{{1, 1}, {5, 2}, {64, 3}}) {
        const auto other = all_logits(*m, toks, kv, batch, threads, path);
        ASSERT_EQ(0, std::memcmp(base.data(), other.data(), base.size() * 4))
            << mla_attn_name(path) << " " << kv << " batch " << batch << " threads " << threads;
      }
    }
}

TEST_P(TinyMla, CachedGenerationEqualsRecomputation) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_gen.gguf"), GetParam()));
  GenerateParams gp;
  gp.n_predict = 40;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  for (MlaAttn path : kPaths)
    for (const char* kv : {"f16", "q8,hadamard", "window:16,sinks:2+f32"}) {
      std::vector<std::vector<TokenId>> runs;
      for (bool cache : {true, false}) {
        gp.use_cache = cache;
        ContextParams cp;
        cp.n_ctx = 128;
        cp.kv = parse_kv_policy(kv);
        cp.mla_attn = path;
        Context ctx(*m, cp);
        runs.push_back(generate(ctx, some_tokens(9), gp, [](const std::string&) {}).tokens);
      }
      ASSERT_EQ(runs[0].size(), 40u);
      EXPECT_EQ(runs[0], runs[1]) << mla_attn_name(path) << " " << kv;
    }
}

// The two paths compute the same scores and outputs, regrouped (SPEC.md
// §3): absorbed q~ = W_UK^T q_nope scores the latent row c, naive scores
// k = W_UK c; absorbed applies W_UV after the weighted sum, naive before.
// Test models with F16 matrices (f32 activations; 8-bit activation rounding
// of Q8_0 matmuls would jump with any change of input) and no expert
// routing (a top-k choice turns rounding into other experts), logits ~4-8:
//  - f32 rows: f32 rounding only, |diff| <= 1e-4 (measured <= 1.5e-5);
//  - f16 rows: layer 0's rows are the same, but the paths' last-bit
//    differences in a layer's output can round a later layer's stored row to
//    the neighbouring f16 value (one of the roundings the f16 cache makes
//    anyway), so they may differ by up to the f16 cache's own error against
//    f32 rows (measured 7e-5 to 1.3e-3 against 3e-3 to 2e-2: one attention
//    kernel's summation order or another's);
//  - q8 rows: the same rows too, but the absorbed q8 kernel also rounds its
//    query q~ to 8-bit blocks (integer dots) where naive keeps it f32, so
//    they may differ by what 8-bit rounding costs: no more than the q8
//    cache's own error against f32 rows (max over the paths; measured
//    0.07-0.52 against 0.09-0.9).
// And the bits differ: otherwise the naive path did not run.
void expect_paths_agree(const Model& m, const char* kv, float tol) {
  const auto toks = some_tokens(100);
  const auto absorbed = all_logits(m, toks, kv, 32, 2, MlaAttn::Absorbed);
  const auto naive = all_logits(m, toks, kv, 32, 2, MlaAttn::Naive);
  const auto ref = all_logits(m, toks, "f32", 32, 2, MlaAttn::Absorbed);
  float diff = 0, mag = 0, own = 0;
  for (size_t i = 0; i < naive.size(); ++i) {
    diff = std::max(diff, std::fabs(absorbed[i] - naive[i]));
    mag = std::max(mag, std::fabs(absorbed[i]));
    own = std::max({own, std::fabs(absorbed[i] - ref[i]), std::fabs(naive[i] - ref[i])});
  }
  std::printf("[%s] max |absorbed - naive| = %.2e, max |logit| %.2f, max |path - f32 rows| %.2e\n", kv, diff, mag,
              own);
  EXPECT_GT(mag, 1.0f) << kv;
  EXPECT_LE(diff, tol > 0 ? tol : own) << kv;
  EXPECT_NE(absorbed, naive) << kv << ": the paths gave the same bits, the naive one did not run";
}

void expect_paths_agree(const Model& m) {
  expect_paths_agree(m, "f32", 1e-4f);
  expect_paths_agree(m, "f16", 0);  // the f16 rows' own error
  expect_paths_agree(m, "q8", 0);  // the q8 rows' own error
}

TEST_P(TinyMla, AbsorbedEqualsNaiveWithinRounding) {
  TinyDeepseek2Spec spec;
  spec.q_lora = GetParam();
  spec.moe = false;
  spec.weights = GgmlType::F16;
  spec.gain = 1.0f;
  expect_paths_agree(*Model::load(write_tiny_deepseek2(temp_path("mla_paths.gguf"), spec)));
}

INSTANTIATE_TEST_SUITE_P(QLora, TinyMla, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "q_lora" : "direct_q"; });

// A conversion's latent has several rope keys (one per KV head) and units of
// several heads (its KV groups): the same agreement.
TEST(ConvertedMla, AbsorbedEqualsNaiveWithinRounding) {
  expect_paths_agree(*Model::load(write_converted_tiny_llama("mla_paths", GgmlType::F16)));
}

// --mla-attn auto: naive for a sequence's kMlaNaiveMinTokens or more tokens
// in one forward pass, absorbed below, bit for bit.
TEST(TinyMlaCache, AutoPicksNaiveForLongBatches) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_auto.gguf"), false));
  const auto toks = some_tokens(kMlaNaiveMinTokens + 20);
  EXPECT_EQ(all_logits(*m, toks, "f16", 256, 2, MlaAttn::Auto), all_logits(*m, toks, "f16", 256, 2, MlaAttn::Naive));
  EXPECT_EQ(all_logits(*m, toks, "f16", kMlaNaiveMinTokens - 1, 2, MlaAttn::Auto),
            all_logits(*m, toks, "f16", 256, 2, MlaAttn::Absorbed));
}

// One latent row [c_KV | k_pe] per token and layer, nothing per head.
TEST(TinyMlaCache, BytesPerTokenAreOneLatentRowPerLayer) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_bytes.gguf"), false));
  for (auto [kv, row] : std::vector<std::pair<const char*, size_t>>{
           {"f16", (kLatent + kRope) * 2}, {"f32", (kLatent + kRope) * 4}, {"q8", (kLatent + kRope) / 32 * 34}}) {
    ContextParams p;
    p.n_ctx = 64;
    p.kv = parse_kv_policy(kv);
    Context ctx(*m, p);
    EXPECT_EQ(ctx.cache().bytes_per_token(), kLayers * row) << kv;
    EXPECT_EQ(ctx.cache().bytes(), kLayers * row * 64) << kv;
  }
}

// Token eviction keeps latent rows like any other (one lane per layer: the
// query group is all heads): a budget covering the text is the full cache bit
// for bit; a smaller one drops rows, is independent of the batch split and
// holds `budget` rows.
TEST(TinyMlaCache, EvictionOnLatentRows) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_evict.gguf"), false));
  const auto toks = some_tokens(70);
  for (const char* st : {"f16", "q8"}) {
    const std::string s = st;
    const auto full = all_logits(*m, toks, "full+" + s, 256, 1);
    EXPECT_EQ(full, all_logits(*m, toks, "h2o:100,recent:8+" + s, 256, 1)) << st;
    EXPECT_EQ(full, all_logits(*m, toks, "snapkv:100+" + s, 256, 1)) << st;
    const auto h2o = all_logits(*m, toks, "h2o:24,recent:6+" + s, 1, 1);
    EXPECT_EQ(h2o, all_logits(*m, toks, "h2o:24,recent:6+" + s, 64, 3)) << st;
    EXPECT_NE(h2o, full) << st << ": nothing dropped, the test would be vacuous";
    // The naive path scores rows for eviction with the absorbed queries too.
    const auto h2o_naive = all_logits(*m, toks, "h2o:24,recent:6+" + s, 1, 1, MlaAttn::Naive);
    EXPECT_EQ(h2o_naive, all_logits(*m, toks, "h2o:24,recent:6+" + s, 64, 3, MlaAttn::Naive)) << st;
  }
  ContextParams p;
  p.n_ctx = 128;
  p.kv = parse_kv_policy("h2o:20,recent:6");
  Context ctx(*m, p);
  std::vector<float> logits(kVocab);
  const auto toks2 = some_tokens(60);
  ctx.eval(toks2.data(), 60, logits.data());
  EXPECT_EQ(ctx.cache().bytes_used(), (size_t)20 * kLayers * (kLatent + kRope) * 2);
}

// Soft gates are per KV head; a latent row is read by every head: refused
// with one clear error (the --kv heads:/gates: policies are refused likewise).
TEST(TinyMlaCache, SoftGatesAreRefused) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_gates.gguf"), false));
  ContextParams p;
  p.n_ctx = 64;
  Context ctx(*m, p);
  try {
    ctx.set_gates(std::vector<float>(kLayers, 0.5f), 4, 8);
    FAIL() << "soft gates accepted on a latent cache";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("latent (MLA) cache"), std::string::npos) << e.what();
  }
}

}  // namespace
