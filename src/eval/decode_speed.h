#pragma once
// Decode speed at depth: prefill `depth` tokens with the context's cache
// policy, then time `steps` single-token forward passes (teacher-forced with
// the text's next tokens, so sampling costs nothing). What a decode step
// reads grows with the cached bytes, so compressed caches should be faster.
#include <cstdint>
#include <vector>

#include "model/context.h"

namespace kvforge {

struct DecodeSpeed {
  int32_t depth = 0;
  int32_t steps = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double tokens_per_second() const { return decode_seconds > 0 ? steps / decode_seconds : 0; }
};

// `text` supplies the tokens (repeated if shorter than depth + steps).
// base.n_ctx is replaced by depth + steps.
DecodeSpeed measure_decode_speed(const Model& model, const ContextParams& base, const std::vector<TokenId>& text,
                                 int32_t depth, int32_t steps);

}  // namespace kvforge
