#include "model/generate.h"

#include <algorithm>
#include <chrono>

#include "model/logprob.h"
#include "model/text_stream.h"
#include "util/error.h"

namespace kvforge {

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The text a context shift keeps: the first n_keep tokens (the prompt's
// start, e.g. a system message; attention sinks) and the newest half of the
// rest of the context.
std::vector<TokenId> shifted_text(const std::vector<TokenId>& text, int32_t n_ctx, int32_t n_keep) {
  const size_t keep = (size_t)std::clamp(n_keep, 0, n_ctx / 2);
  const size_t tail = (size_t)(n_ctx - (int32_t)keep) / 2;
  std::vector<TokenId> out(text.begin(), text.begin() + (ptrdiff_t)keep);
  out.insert(out.end(), text.end() - (ptrdiff_t)tail, text.end());
  return out;
}
}  // namespace

GenerateResult generate(Context& ctx, const std::vector<TokenId>& prompt, const GenerateParams& params,
                        const std::function<void(const std::string&)>& on_text) {
  const Tokenizer& tok = ctx.model().tokenizer();
  const int32_t n_vocab = ctx.model().config().n_vocab;
  if (prompt.empty()) fail("the prompt is empty (nothing to condition on)");
  if ((int64_t)prompt.size() > ctx.cache().room())
    fail("prompt of {} tokens does not fit in the context of {} tokens ({} already used); raise -c",
         prompt.size(), ctx.n_ctx(), ctx.n_past());

  GenerateResult res;
  res.n_prompt = (int32_t)prompt.size();
  Sampler sampler(params.sampling);
  for (TokenId t : prompt) sampler.accept(t);
  TextStream stream(params.stop);
  std::vector<float> logits(n_vocab);
  // Without the cache, `history` is re-run from scratch every step.
  std::vector<TokenId> history;  // the whole text so far (cache off, context shift)
  const int32_t base_past = ctx.n_past();
  if (!params.use_cache || params.context_shift) {
    if (base_past != 0) fail("{} needs a fresh context", params.use_cache ? "context shift" : "cache-off generation");
    history = prompt;
  }

  double t0 = now_seconds();
  ctx.eval(prompt.data(), (int32_t)prompt.size(), logits.data(), false, params.on_prefill);
  res.prefill_seconds = now_seconds() - t0;

  t0 = now_seconds();
  res.stop_reason = "length";
  for (int32_t i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
    const TokenId next = sampler.sample(logits.data(), n_vocab);
    sampler.accept(next);
    if (!params.ignore_eos && tok.is_end_of_generation(next)) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(next);
    res.logprobs.push_back(token_logprob(logits.data(), n_vocab, next));
    const std::string text = stream.push(tok.token_to_piece(next));
    if (!text.empty()) on_text(text);
    if (stream.stopped()) {
      res.stop_reason = "stop string";
      break;
    }
    if (params.n_predict >= 0 && i + 1 == params.n_predict) break;  // no forward pass for an unused token
    if (!history.empty()) history.push_back(next);
    const bool full = ctx.cache().room() < 1;  // holds the text without `next`, cache on or off
    if (full && !params.context_shift) {  // a full-history cache is full; a window cache never is
      res.stop_reason = "context full";
      break;
    }
    if (full) {  // the same shift with the cache on or off, so both give the same text
      history = shifted_text(history, ctx.n_ctx(), params.n_keep);
      ++res.n_shifts;
    }
    if (params.use_cache && !full) {
      ctx.eval(&next, 1, logits.data());
    } else {
      ctx.reset();
      ctx.eval(history.data(), (int32_t)history.size(), logits.data());
    }
    ++res.n_decoded;
  }
  res.decode_seconds = now_seconds() - t0;
  const std::string rest = stream.flush();
  if (!rest.empty()) on_text(rest);
  return res;
}

}  // namespace kvforge
