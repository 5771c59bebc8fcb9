// The exactness contract on a tiny random MLA + MoE model (tiny_deepseek2.h: one
// dense layer, then mixture-of-experts layers with shared experts and a
// selection bias): logits bit-identical whatever the prefill batch size and
// thread count, and cached generation equal to recomputation, with latent
// caches in f16, q8 and a window; the latent cache's bytes per token.
#include <gtest/gtest.h>

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
                              int threads) {
  ContextParams p;
  p.n_ctx = 128;
  p.n_batch = batch;
  p.n_threads = threads;
  p.kv = parse_kv_policy(kv);
  Context ctx(m, p);
  std::vector<float> out(toks.size() * m.config().n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), out.data(), true);
  return out;
}

class TinyMla : public ::testing::TestWithParam<bool> {};  // q_lora

TEST_P(TinyMla, LogitsIndependentOfBatchAndThreads) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_exact.gguf"), GetParam()));
  const auto toks = some_tokens(70);
  for (const char* kv : {"f16", "q8", "window:20,sinks:4+f16"}) {
    const auto base = all_logits(*m, toks, kv, 256, 1);
    for (auto [batch, threads] : std::vector<std::pair<int, int>>{{1, 1}, {5, 2}, {64, 3}}) {
      const auto other = all_logits(*m, toks, kv, batch, threads);
      ASSERT_EQ(0, std::memcmp(base.data(), other.data(), base.size() * 4))
          << kv << " batch " << batch << " threads " << threads;
    }
  }
}

TEST_P(TinyMla, CachedGenerationEqualsRecomputation) {
  auto m = Model::load(write_tiny_deepseek2(temp_path("mla_gen.gguf"), GetParam()));
  GenerateParams gp;
  gp.n_predict = 40;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  for (const char* kv : {"f16", "q8,hadamard", "window:16,sinks:2+f32"}) {
    std::vector<std::vector<TokenId>> runs;
    for (bool cache : {true, false}) {
      gp.use_cache = cache;
      ContextParams cp;
      cp.n_ctx = 128;
      cp.kv = parse_kv_policy(kv);
      Context ctx(*m, cp);
      runs.push_back(generate(ctx, some_tokens(9), gp, [](const std::string&) {}).tokens);
    }
    ASSERT_EQ(runs[0].size(), 40u);
    EXPECT_EQ(runs[0], runs[1]) << kv;
  }
}

INSTANTIATE_TEST_SUITE_P(QLora, TinyMla, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "q_lora" : "direct_q"; });

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
