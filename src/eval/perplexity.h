#pragma once
// Perplexity the way llama.cpp's llama-perplexity measures it, so the two
// numbers can be compared directly:
//
//  - the whole text is tokenized once (BOS first if the vocabulary asks for it);
//  - it is cut into n_chunk = n_tokens / n_ctx consecutive chunks of n_ctx
//    tokens (the tail is dropped; at least 2 * n_ctx tokens are required);
//  - each chunk is evaluated from an empty cache; when the model adds BOS,
//    the chunk's first token is replaced by BOS;
//  - only the second half is scored: the logits at positions
//    first = n_ctx / 2 .. n_ctx - 2 predict tokens first+1 .. n_ctx - 1
//    (n_ctx - 1 - first tokens per chunk); the first half is context;
//  - NLL = -log_softmax(logits)[next] in double; ppl = exp(mean NLL), with the
//    standard error ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (count - 1)).
//
// The chunk is fed through Context::eval, so a window policy evicts exactly
// as in generation: once its ring is full the cache accepts one token per
// forward pass and every scored token attends to the sinks plus its own last
// W tokens (never to tokens the window has dropped).
#include <cstdint>
#include <functional>
#include <vector>

#include "model/context.h"
#include "tokenizer/tokenizer.h"

namespace kvforge {

struct ChunkPlan {
  int32_t n_ctx = 0;
  int32_t n_chunks = 0;
  int32_t first = 0;  // first position whose logits are scored
  int32_t scored_per_chunk() const { return n_ctx - 1 - first; }
  int64_t chunk_start(int32_t i) const { return (int64_t)i * n_ctx; }
};

// max_chunks < 0: all. Throws kvforge::Error if n_ctx < 2 (nothing to score)
// or the text has fewer than 2 * n_ctx tokens.
ChunkPlan plan_chunks(int64_t n_tokens, int32_t n_ctx, int32_t max_chunks);

// -log softmax(logits)[target], computed in double (max-subtracted).
double token_nll(const float* logits, int32_t n_vocab, TokenId target);

// Running mean and spread of NLL values.
class NllStats {
 public:
  void add(double nll) {
    sum_ += nll;
    sum2_ += nll * nll;
    ++count_;
  }
  int64_t count() const { return count_; }
  double mean() const { return count_ ? sum_ / (double)count_ : 0.0; }
  double ppl() const;
  double ppl_stderr() const;  // 0 with fewer than 2 values

 private:
  double sum_ = 0, sum2_ = 0;
  int64_t count_ = 0;
};

struct PerplexityResult {
  ChunkPlan plan;
  int64_t n_text_tokens = 0;
  std::vector<double> running_ppl;  // after each chunk
  std::vector<double> chunk_nll;    // mean NLL of each chunk alone
  double ppl = 0, ppl_stderr = 0, mean_nll = 0;
  int64_t n_scored = 0;
  double seconds = 0;
};

struct PerplexityParams {
  int32_t n_ctx = 512;
  int32_t max_chunks = -1;
  bool bos_first = true;  // replace each chunk's first token by BOS (if the model has BOS and adds it)
};

// Called after every chunk: (chunk index, plan, result so far, seconds elapsed).
using PerplexityProgress = std::function<void(int32_t, const PerplexityResult&, double)>;

// ctx must have room for n_ctx tokens (its cache is reset per chunk).
PerplexityResult compute_perplexity(Context& ctx, const std::vector<TokenId>& tokens, const PerplexityParams& params,
                                    const PerplexityProgress& on_chunk = {});

}  // namespace kvforge
