// Progress of long evaluations: Context::eval reports every batch, and
// prefill_progress draws a bar only for evaluations that run over a second.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "eval/progress_bar.h"
#include "model/context.h"
#include "tiny_model.h"

using namespace kvforge;
using namespace kvforge::testing;

namespace {

TEST(Progress, EvalReportsEveryBatchAndChangesNothing) {
  auto m = Model::load(write_tiny_model(temp_path("progress.gguf"), TinyModelSpec{}));
  std::vector<TokenId> toks(50);
  for (int i = 0; i < 50; ++i) toks[i] = (TokenId)((i * 37 + 11) % 256);
  ContextParams p;
  p.n_ctx = 64;
  p.n_batch = 16;
  const size_t nv = m->config().n_vocab;
  std::vector<float> with(nv), without(nv);
  std::vector<std::pair<int32_t, int32_t>> seen;
  Context a(*m, p), b(*m, p);
  a.eval(toks.data(), 50, with.data(), false, [&](int32_t done, int32_t total) { seen.emplace_back(done, total); });
  b.eval(toks.data(), 50, without.data());
  const std::vector<std::pair<int32_t, int32_t>> want = {{0, 50}, {16, 50}, {32, 50}, {48, 50}, {50, 50}};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(with, without);
}

TEST(Progress, BarOnlyForEvaluationsLongerThanASecond) {
  auto progress = prefill_progress("prefill");
  ::testing::internal::CaptureStderr();
  progress(0, 1000);
  progress(500, 1000);
  progress(1000, 1000);  // a fast eval: silent
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");

  ::testing::internal::CaptureStderr();
  progress(0, 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(1050));
  progress(500, 1000);   // over a second: the bar appears
  progress(1000, 1000);  // and is completed, whatever the redraw interval
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("prefill ["), std::string::npos) << err;
  EXPECT_NE(err.find("500/1000"), std::string::npos) << err;
  EXPECT_NE(err.find("1000/1000 100%"), std::string::npos) << err;
  EXPECT_NE(err.find("tok/s"), std::string::npos) << err;
}

}  // namespace
