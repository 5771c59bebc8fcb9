#include "eval/decode_speed.h"

#include <chrono>

#include "util/error.h"

namespace kvforge {

DecodeSpeed measure_decode_speed(const Model& model, const ContextParams& base, const std::vector<TokenId>& text,
                                 int32_t depth, int32_t steps) {
  using clock = std::chrono::steady_clock;
  if (depth < 1 || steps < 1) fail("decode speed: depth and steps must be positive");
  if (text.empty()) fail("decode speed: no text tokens");
  std::vector<TokenId> toks((size_t)depth + steps);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = text[i % text.size()];
  ContextParams cp = base;
  cp.n_ctx = depth + steps;
  Context ctx(model, cp);
  std::vector<float> logits(model.config().n_vocab);
  DecodeSpeed r{depth, steps, 0, 0};
  auto t0 = clock::now();
  ctx.eval(toks.data(), depth, logits.data());
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();
  for (int32_t i = 0; i < steps; ++i) ctx.eval(&toks[(size_t)depth + i], 1, logits.data());
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return r;
}

}  // namespace kvforge
