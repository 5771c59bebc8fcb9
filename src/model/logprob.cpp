#include "model/logprob.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace kvforge {

double log_sum_exp(const float* logits, int32_t n_vocab) {
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp((double)logits[i] - mx);
  return mx + std::log(sum);
}

float token_logprob(const float* logits, int32_t n_vocab, TokenId id) {
  if (id < 0 || id >= n_vocab) fail("token id {} is outside the vocabulary [0, {})", id, n_vocab);
  return (float)((double)logits[id] - log_sum_exp(logits, n_vocab));
}

void token_logprobs(const float* logits, int32_t n_vocab, const TokenId* ids, int32_t n, float* out) {
  for (int32_t i = 0; i < n; ++i) out[i] = token_logprob(logits + (int64_t)i * n_vocab, n_vocab, ids[i]);
}

}  // namespace kvforge
