#pragma once
// Text generation: prefill the prompt, then decode one token at a time,
// sampling from the logits and streaming text as it completes.
#include <functional>
#include <string>
#include <vector>

#include "model/context.h"
#include "model/sampler.h"

namespace kvforge {

struct GenerateParams {
  int32_t n_predict = 256;           // max new tokens (-1 = until EOS or context full)
  SamplingParams sampling;
  std::vector<std::string> stop;     // stop strings (not emitted)
  bool ignore_eos = false;           // keep going past end-of-generation tokens
  bool use_cache = true;             // false: recompute the whole sequence every step (baseline)
  // When a full-history cache is full: false stops with "context full";
  // true shifts the window (keeps the first n_keep tokens and the newest
  // half of the rest, re-evaluated at contiguous positions) and goes on.
  bool context_shift = false;
  int32_t n_keep = 4;
  ProgressFn on_prefill;             // progress of the prompt's prefill (optional)
};

struct GenerateResult {
  std::vector<TokenId> tokens;  // generated ids (the end-of-generation token excluded)
  std::vector<float> logprobs;  // [tokens] log p(token) under the model's raw distribution (model/logprob.h)
  std::string stop_reason;      // "eos", "stop string", "length", "context full"
  int32_t n_prompt = 0;
  double prefill_seconds = 0;   // evaluating the prompt (first step without cache)
  double decode_seconds = 0;    // every later step
  int32_t n_decoded = 0;        // forward passes after the prefill
  int32_t n_shifts = 0;         // context shifts (GenerateParams::context_shift)
};

// Appends prompt and generated tokens to ctx (with the cache on). on_text
// receives complete UTF-8 text as it is produced.
GenerateResult generate(Context& ctx, const std::vector<TokenId>& prompt, const GenerateParams& params,
                        const std::function<void(const std::string&)>& on_text);

}  // namespace kvforge
