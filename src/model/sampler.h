#pragma once
// Picks the next token from the model's logits.
//
// Order of operations in sample() (each step is skipped when "off"):
//  1. repetition penalty on the distinct tokens among the last repeat_last_n
//     accepted ones (CTRL rule: positive logits are divided by the penalty,
//     negative ones multiplied, so a repeated token always becomes less likely);
//  2. temperature <= 0: greedy argmax (ties -> lowest id), nothing else applies;
//  3. top-k: keep the k highest logits (ties -> lower id first);
//  4. softmax of logits / temperature;
//  5. top-p (nucleus): keep the smallest prefix of the tokens sorted by
//     probability whose cumulative probability is >= top_p (at least one);
//  6. min-p: drop tokens with p < min_p * p_max;
//  7. renormalise and draw by inverse CDF from a uniform double built from the
//     raw 64-bit output of std::mt19937_64 (whose sequence the C++ standard
//     fixes), so a seed gives the same tokens with every standard library.
//
// Seed default: a fixed 0, not a random one. A plain `kvforge run` is then
// reproducible run to run (matching the engine's exactness goal and making
// bug reports replayable); users who want variety pass --seed.
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvforge {

struct SamplingParams {
  float temperature = 0.8f;     // 0 = greedy
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off; must be in (0, 1]
  float min_p = 0.05f;          // 0 = off; must be in [0, 1]
  float repeat_penalty = 1.0f;  // 1 = off; must be > 0
  int repeat_last_n = 64;       // window of accepted tokens the penalty looks at
  uint64_t seed = 0;            // fixed default: see the file comment

  void validate() const;  // throws kvforge::Error naming the bad field
};

// One entry of the final (renormalised) distribution.
struct TokenProb {
  TokenId id;
  double p;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates params

  // Draws one token; does not record it (call accept() for that, also for
  // prompt tokens that should count for the repetition penalty).
  TokenId sample(const float* logits, int n_vocab);

  // The distribution sample() would draw from (steps 1-7 without the draw),
  // in draw order; does not advance the random generator. For tests and
  // for reporting log-probabilities.
  std::vector<TokenProb> distribution(const float* logits, int n_vocab);

  // The logits sample() draws from before its cuts: after the repetition
  // penalty, divided by the temperature (greedy: by 1); top-k, top-p and
  // min-p are not applied, so every token keeps a finite log-probability.
  // out: [n_vocab]. The server reports log-probabilities of these (the
  // distribution sampled from, not the model's raw one).
  void tempered_logits(const float* logits, int n_vocab, std::vector<float>& out);

  void accept(TokenId id);
  // Forgets the history and restarts the random stream from the seed.
  void reset();

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    TokenId id;
    float logit;
    double w;  // unnormalised probability, exp((logit - max) / T)
  };

  // Steps 1-6: leaves the kept tokens in cand_ and returns their weight sum.
  // Returns a negative value in greedy mode (cand_ then holds one token).
  double build(const float* logits, int n_vocab);
  // Step 1: copies the logits into logits_ (checked) with the penalty applied.
  void load(const float* logits, int n_vocab);
  void apply_repeat_penalty(int n_vocab);
  void select_top_k(int k);
  void keep_top_p(double z, bool sorted);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::deque<TokenId> recent_;   // last repeat_last_n accepted tokens
  // Buffers reused between calls: no per-token allocation.
  std::vector<float> logits_;    // input logits after the repetition penalty
  std::vector<Candidate> cand_;  // tokens still in the running
  std::vector<TokenId> scratch_;
};

}  // namespace kvforge
