// Exactness by design, on tiny random models: cached decoding equals
// recomputing from scratch, and logits do not depend on batch split or
// thread count (bit-for-bit, memcmp).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/context.h"
#include "model/generate.h"
#include "tiny_model.h"
#include "util/error.h"

using namespace kvforge;
using namespace kvforge::testing;

namespace {

std::vector<TokenId> some_tokens(int n) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) t.push_back((TokenId)((i * 37 + 11) % 256));
  return t;
}

// Logits of every position, evaluated in batches of `batch` tokens.
std::vector<float> all_logits(const Model& m, const std::vector<TokenId>& toks, int batch, int threads) {
  ContextParams p;
  p.n_ctx = 128;
  p.n_batch = batch;
  p.n_threads = threads;
  Context ctx(m, p);
  std::vector<float> out(toks.size() * m.config().n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), out.data(), true);
  return out;
}

class TinyModels : public ::testing::TestWithParam<TinyModelSpec> {};

TEST_P(TinyModels, LogitsIndependentOfBatchAndThreads) {
  const std::string path = write_tiny_model(temp_path("exact.gguf"), GetParam());
  auto m = Model::load(path);
  const auto toks = some_tokens(70);
  const auto base = all_logits(*m, toks, 256, 1);
  for (auto [batch, threads] : std::vector<std::pair<int, int>>{{1, 1}, {5, 2}, {64, 3}, {256, 2}}) {
    const auto other = all_logits(*m, toks, batch, threads);
    ASSERT_EQ(0, std::memcmp(base.data(), other.data(), base.size() * 4)) << "batch " << batch << " threads " << threads;
  }
}

TEST_P(TinyModels, CachedGenerationEqualsRecomputation) {
  const std::string path = write_tiny_model(temp_path("gen.gguf"), GetParam());
  auto m = Model::load(path);
  GenerateParams gp;
  gp.n_predict = 60;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  std::vector<std::vector<TokenId>> runs;
  for (bool cache : {true, false}) {
    gp.use_cache = cache;
    ContextParams cp;
    cp.n_ctx = 128;
    Context ctx(*m, cp);
    runs.push_back(generate(ctx, some_tokens(9), gp, [](const std::string&) {}).tokens);
  }
  ASSERT_EQ(runs[0].size(), 60u);
  EXPECT_EQ(runs[0], runs[1]);
}

TEST_P(TinyModels, ContextFullIsAnErrorNotCorruption) {
  const std::string path = write_tiny_model(temp_path("full.gguf"), GetParam());
  auto m = Model::load(path);
  ContextParams cp;
  cp.n_ctx = 16;
  Context ctx(*m, cp);
  std::vector<float> logits(m->config().n_vocab);
  const auto toks = some_tokens(17);
  EXPECT_THROW(ctx.eval(toks.data(), 17, logits.data()), Error);
  EXPECT_EQ(ctx.n_past(), 0);  // nothing was cached by the failed call
  ctx.eval(toks.data(), 16, logits.data());
  EXPECT_THROW(ctx.eval(toks.data(), 1, logits.data()), Error);
  EXPECT_EQ(ctx.n_past(), 16);
}

TinyModelSpec llama_q41() { return {}; }
TinyModelSpec llama_q80() {
  TinyModelSpec s;
  s.weight_type = GgmlType::Q8_0;
  s.n_kv_head = 4;
  return s;
}
TinyModelSpec gpt2_f16() {
  TinyModelSpec s;
  s.arch = "gpt2";
  s.n_kv_head = s.n_head;
  s.weight_type = GgmlType::F16;
  return s;
}

INSTANTIATE_TEST_SUITE_P(Archs, TinyModels, ::testing::Values(llama_q41(), llama_q80(), gpt2_f16()),
                         [](const auto& info) {
                           return info.param.arch + "_" + type_traits(info.param.weight_type).name;
                         });

}  // namespace
