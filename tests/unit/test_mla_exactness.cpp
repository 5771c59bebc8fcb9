// The exactness contract on a tiny random MLA + MoE model (deepseek2: one
// dense layer, then mixture-of-experts layers with shared experts and a
// selection bias): logits bit-identical whatever the prefill batch size and
// thread count, and cached generation equal to recomputation, with latent
// caches in f16, q8 and a window; the latent cache's bytes per token.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "gguf/gguf.h"
#include "model/context.h"
#include "model/generate.h"
#include "ops/quantize.h"
#include "tiny_model.h"
#include "util/error.h"

using namespace kvforge;
using namespace kvforge::testing;

namespace {

constexpr int kVocab = 257, kD = 64, kHeads = 4, kLatent = 64, kRope = 32, kNope = 32, kV = 32, kLayers = 3;
constexpr int kExperts = 8, kUsed = 3, kFfExp = 32, kFf = 96;

std::string write_tiny_deepseek2(const std::string& path, bool q_lora) {
  std::mt19937 rng(5);
  gguf::Writer w;
  const std::string a = "deepseek2";
  w.set_string("general.architecture", a);
  w.set_u32(a + ".block_count", kLayers);
  w.set_u32(a + ".embedding_length", kD);
  w.set_u32(a + ".feed_forward_length", kFf);
  w.set_u32(a + ".attention.head_count", kHeads);
  w.set_u32(a + ".attention.head_count_kv", 1);
  w.set_u32(a + ".context_length", 512);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32(a + ".attention.q_lora_rank", q_lora ? 32 : 0);
  w.set_u32(a + ".attention.kv_lora_rank", kLatent);
  w.set_u32(a + ".attention.key_length", kLatent + kRope);
  w.set_u32(a + ".attention.value_length", kLatent);
  w.set_u32(a + ".attention.key_length_mla", kNope + kRope);
  w.set_u32(a + ".attention.value_length_mla", kV);
  w.set_u32(a + ".rope.dimension_count", kRope);
  w.set_u32(a + ".leading_dense_block_count", 1);
  w.set_u32(a + ".expert_count", kExperts);
  w.set_u32(a + ".expert_used_count", kUsed);
  w.set_u32(a + ".expert_shared_count", 1);
  w.set_u32(a + ".expert_feed_forward_length", kFfExp);
  w.set_u32(a + ".expert_gating_func", 2);
  w.set_f32(a + ".expert_weights_scale", 1.5f);
  w.set_string("tokenizer.ggml.model", "gpt2");
  std::vector<std::string> toks;
  for (int i = 0; i < kVocab; ++i) toks.push_back(std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", toks);

  // Q8_0 matrices ([n][rows][cols], n = 1 for 2-D), so the quantized matmul
  // paths are what is checked; norms and the bias f32.
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto matrix = [&](const std::string& name, int rows, int cols, int n = 1) {
    std::vector<float> x((size_t)n * rows * cols);
    for (float& v : x) v = nd(rng) * 2.0f / std::sqrt((float)cols);
    std::vector<uint8_t> q(row_bytes(GgmlType::Q8_0, cols) * rows * n);
    quantize_row(GgmlType::Q8_0, x.data(), q.data(), (int64_t)x.size());
    if (n == 1) w.add_tensor(name, GgmlType::Q8_0, {cols, rows}, q.data());
    else w.add_tensor(name, GgmlType::Q8_0, {cols, rows, n}, q.data());
  };
  auto vec = [&](const std::string& name, int n, float mean) {
    std::vector<float> v(n);
    for (float& x : v) x = mean + 0.1f * nd(rng);
    w.add_tensor(name, GgmlType::F32, {n}, v.data());
  };
  matrix("token_embd.weight", kVocab, kD);
  vec("output_norm.weight", kD, 1.0f);
  matrix("output.weight", kVocab, kD);
  for (int i = 0; i < kLayers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    vec(p + "attn_norm.weight", kD, 1.0f);
    vec(p + "ffn_norm.weight", kD, 1.0f);
    if (q_lora) {
      matrix(p + "attn_q_a.weight", 32, kD);
      vec(p + "attn_q_a_norm.weight", 32, 1.0f);
      matrix(p + "attn_q_b.weight", kHeads * (kNope + kRope), 32);
    } else {
      matrix(p + "attn_q.weight", kHeads * (kNope + kRope), kD);
    }
    matrix(p + "attn_kv_a_mqa.weight", kLatent + kRope, kD);
    vec(p + "attn_kv_a_norm.weight", kLatent, 1.0f);
    matrix(p + "attn_k_b.weight", kLatent, kNope, kHeads);
    matrix(p + "attn_v_b.weight", kV, kLatent, kHeads);
    matrix(p + "attn_output.weight", kD, kHeads * kV);
    if (i == 0) {
      matrix(p + "ffn_gate.weight", kFf, kD);
      matrix(p + "ffn_up.weight", kFf, kD);
      matrix(p + "ffn_down.weight", kD, kFf);
      continue;
    }
    matrix(p + "ffn_gate_inp.weight", kExperts, kD);
    vec(p + "exp_probs_b.bias", kExperts, 0.0f);
    matrix(p + "ffn_gate_exps.weight", kFfExp, kD, kExperts);
    matrix(p + "ffn_up_exps.weight", kFfExp, kD, kExperts);
    matrix(p + "ffn_down_exps.weight", kD, kFfExp, kExperts);
    matrix(p + "ffn_gate_shexp.weight", kFfExp, kD);
    matrix(p + "ffn_up_shexp.weight", kFfExp, kD);
    matrix(p + "ffn_down_shexp.weight", kD, kFfExp);
  }
  w.write(path);
  return path;
}

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
