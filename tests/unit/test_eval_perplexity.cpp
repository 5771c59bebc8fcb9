// Pure parts of the perplexity measurement: chunking, scoring, statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "eval/perplexity.h"
#include "eval/progress_bar.h"
#include "util/error.h"

using namespace kvforge;

TEST(EvalPerplexity, ChunkPlanLikeLlamaCpp) {
  const ChunkPlan p = plan_chunks(70000, 512, -1);
  EXPECT_EQ(p.n_ctx, 512);
  EXPECT_EQ(p.n_chunks, 70000 / 512);  // the tail is dropped
  EXPECT_EQ(p.first, 256);
  EXPECT_EQ(p.scored_per_chunk(), 255);  // logits 256..510 predict tokens 257..511
  EXPECT_EQ(p.chunk_start(3), 3 * 512);
  EXPECT_EQ(plan_chunks(70000, 512, 4).n_chunks, 4);
  EXPECT_EQ(plan_chunks(1100, 512, 10).n_chunks, 2);
  EXPECT_EQ(plan_chunks(1024, 511, -1).first, 255);
}

TEST(EvalPerplexity, ChunkPlanRejectsShortTextsAndTinyContexts) {
  EXPECT_THROW(plan_chunks(1023, 512, -1), Error);  // needs 2 * n_ctx tokens
  EXPECT_THROW(plan_chunks(100, 1, -1), Error);
  EXPECT_THROW(plan_chunks(10000, 512, 0), Error);
}

TEST(EvalPerplexity, TokenNllIsNegativeLogSoftmax) {
  const std::vector<float> logits{1.0f, 2.0f, 3.0f, -1.0f};
  double z = 0;
  for (float l : logits) z += std::exp((double)l);
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(token_nll(logits.data(), 4, t), -(logits[t] - std::log(z)), 1e-12);
  // Uniform logits: NLL = log(n), whatever their scale.
  const std::vector<float> flat(1000, 1e4f);
  EXPECT_NEAR(token_nll(flat.data(), 1000, 7), std::log(1000.0), 1e-9);
  // Large logits do not overflow (max subtracted).
  const std::vector<float> big{1000.0f, 0.0f};
  EXPECT_NEAR(token_nll(big.data(), 2, 0), std::log1p(std::exp(-1000.0)), 1e-12);
  EXPECT_NEAR(token_nll(big.data(), 2, 1), 1000.0, 1e-9);
  EXPECT_THROW(token_nll(big.data(), 2, 2), Error);
}

TEST(EvalPerplexity, StatsGiveExpMeanAndLlamaCppStandardError) {
  NllStats s;
  EXPECT_EQ(s.ppl_stderr(), 0.0);
  const std::vector<double> v{1.0, 2.0, 3.0, 4.0};
  for (double x : v) s.add(x);
  EXPECT_EQ(s.count(), 4);
  EXPECT_DOUBLE_EQ(s.mean(), 2.5);
  EXPECT_NEAR(s.ppl(), std::exp(2.5), 1e-12);
  // llama.cpp: ppl * sqrt((mean(x^2) - mean(x)^2) / (n - 1)).
  const double var = (1 + 4 + 9 + 16) / 4.0 - 2.5 * 2.5;
  EXPECT_NEAR(s.ppl_stderr(), std::exp(2.5) * std::sqrt(var / 3), 1e-12);
  NllStats same;
  for (int i = 0; i < 5; ++i) same.add(0.7);
  EXPECT_EQ(same.ppl_stderr(), 0.0);
}

TEST(EvalPerplexity, ProgressBarRendersEta) {
  const std::string s = ProgressBar::render("ppl", 2, 8, 10.0, "x", 8);
  EXPECT_EQ(s, "ppl [==>     ] 2/8  25% | 10 s elapsed, ETA 30 s | x");
  EXPECT_EQ(ProgressBar::render("p", 0, 4, 0, "", 4), "p [>   ] 0/4   0% | 0 s elapsed, ETA ?");
  EXPECT_EQ(ProgressBar::render("p", 4, 4, 125, "", 4), "p [====] 4/4 100% | 2m05s elapsed, ETA 0 s");
  EXPECT_EQ(format_duration(7322), "2h02m");
}
