#pragma once
// Log-probabilities of tokens under the model's raw distribution
// (log-softmax of the logits, no sampling transforms): what a trainer's
// policy-gradient ratio and a perplexity need.
#include <cstdint>

#include "tokenizer/tokenizer.h"

namespace kvforge {

// log(sum_i exp(logits[i])) over [n_vocab], summed in double after taking out
// the maximum: the normaliser every log-probability below subtracts.
double log_sum_exp(const float* logits, int32_t n_vocab);

// log p(id) = logits[id] - log_sum_exp(logits).
// Throws kvforge::Error for an id outside [0, n_vocab).
float token_logprob(const float* logits, int32_t n_vocab, TokenId id);

// out[i] = token_logprob(logits + i * n_vocab, n_vocab, ids[i]) for i < n.
// logits: [n][n_vocab]; ids, out: [n].
void token_logprobs(const float* logits, int32_t n_vocab, const TokenId* ids, int32_t n, float* out);

}  // namespace kvforge
