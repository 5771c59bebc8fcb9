#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/logprob.h"
#include "util/error.h"

using namespace kvforge;

TEST(Logprob, MatchesHandComputedSoftmax) {
  // log softmax of (0, ln 2, ln 3, ln 4) is ln(k / 10) for k = 1..4.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  for (TokenId id = 0; id < 4; ++id)
    EXPECT_NEAR(token_logprob(logits.data(), 4, id), std::log((id + 1) / 10.0), 1e-6);
}

TEST(Logprob, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits = {1000.0f, 1000.0f};
  EXPECT_NEAR(token_logprob(logits.data(), 2, 1), std::log(0.5), 1e-6);
}

TEST(Logprob, RowsAreIndependent) {
  const std::vector<float> logits = {0.0f, 0.0f, /* row 2 */ 0.0f, std::log(3.0f)};  // [2][2]
  const std::vector<TokenId> ids = {0, 1};
  std::vector<float> out(2);
  token_logprobs(logits.data(), 2, ids.data(), 2, out.data());
  EXPECT_NEAR(out[0], std::log(0.5), 1e-6);
  EXPECT_NEAR(out[1], std::log(0.75), 1e-6);
}

TEST(Logprob, IdOutsideVocabularyThrows) {
  const std::vector<float> logits = {0.0f, 0.0f};
  EXPECT_THROW(token_logprob(logits.data(), 2, 2), Error);
  EXPECT_THROW(token_logprob(logits.data(), 2, -1), Error);
}
