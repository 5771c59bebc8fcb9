#pragma once
// Log-probabilities of tokens under the model's raw distribution
// (log-softmax of the logits, no sampling transforms): what a trainer's
// policy-gradient ratio and a perplexity need.
#include <cstdint>

#include "tokenizer/tokenizer.h"

namespace kvforge {

// log p(id) = logits[id] - logsumexp(logits), summed in double.
// Throws kvforge::Error for an id outside [0, n_vocab).
float token_logprob(const float* logits, int32_t n_vocab, TokenId id);

// out[i] = token_logprob(logits + i * n_vocab, n_vocab, ids[i]) for i < n.
// logits: [n][n_vocab]; ids, out: [n].
void token_logprobs(const float* logits, int32_t n_vocab, const TokenId* ids, int32_t n, float* out);

}  // namespace kvforge
