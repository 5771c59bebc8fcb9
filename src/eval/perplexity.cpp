// See perplexity.h for the method (llama.cpp's llama-perplexity).
#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "util/error.h"

namespace kvforge {

ChunkPlan plan_chunks(int64_t n_tokens, int32_t n_ctx, int32_t max_chunks) {
  if (n_ctx < 2) fail("context size {} is too small for perplexity (at least 2 tokens per chunk)", n_ctx);
  if (n_tokens < 2 * (int64_t)n_ctx)
    fail("the text has {} tokens; perplexity with -c {} needs at least {} (2 * context size)", n_tokens, n_ctx,
         2 * (int64_t)n_ctx);
  ChunkPlan p;
  p.n_ctx = n_ctx;
  const int64_t all = n_tokens / n_ctx;
  p.n_chunks = (int32_t)(max_chunks < 0 ? all : std::min<int64_t>(all, max_chunks));
  p.first = n_ctx / 2;
  if (p.n_chunks <= 0) fail("no chunk to evaluate (--chunks {})", max_chunks);
  return p;
}

double token_nll(const float* logits, int32_t n_vocab, TokenId target) {
  if (target < 0 || target >= n_vocab) fail("token id {} out of range [0, {})", target, n_vocab);
  float mx = logits[0];
  for (int32_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp((double)logits[i] - (double)mx);
  return -(((double)logits[target] - (double)mx) - std::log(sum));
}

double NllStats::ppl() const { return std::exp(mean()); }

double NllStats::ppl_stderr() const {
  if (count_ < 2) return 0;
  const double m = mean();
  const double var = sum2_ / (double)count_ - m * m;
  if (var <= 0) return 0;
  return ppl() * std::sqrt(var / (double)(count_ - 1));
}

PerplexityResult compute_perplexity(Context& ctx, const std::vector<TokenId>& tokens, const PerplexityParams& params,
                                    const PerplexityProgress& on_chunk) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  PerplexityResult r;
  r.n_text_tokens = (int64_t)tokens.size();
  r.plan = plan_chunks(r.n_text_tokens, params.n_ctx, params.max_chunks);
  const ChunkPlan& plan = r.plan;
  const Tokenizer& tok = ctx.model().tokenizer();
  const int32_t n_vocab = ctx.model().config().n_vocab;
  const TokenId bos = tok.vocab().bos;
  const bool use_bos = params.bos_first && tok.vocab().add_bos && bos >= 0;

  // The context half is evaluated without logits; the scored half in pieces
  // of at most `piece` tokens, so memory stays at piece * n_vocab floats. The
  // kernels are batch-invariant, so the split does not change the logits.
  const int32_t piece = 128;
  std::vector<float> logits((size_t)piece * n_vocab);
  std::vector<TokenId> chunk(plan.n_ctx);
  NllStats all;
  for (int32_t c = 0; c < plan.n_chunks; ++c) {
    const int64_t start = plan.chunk_start(c);
    std::copy(tokens.begin() + start, tokens.begin() + start + plan.n_ctx, chunk.begin());
    if (use_bos) chunk[0] = bos;
    ctx.reset();
    ctx.eval(chunk.data(), plan.first, logits.data(), false);
    NllStats this_chunk;
    // Logits of position p predict token p + 1; positions first .. n_ctx - 2.
    for (int32_t p0 = plan.first; p0 < plan.n_ctx - 1; p0 += piece) {
      const int32_t n = std::min(piece, plan.n_ctx - 1 - p0);
      ctx.eval(chunk.data() + p0, n, logits.data(), true);
      for (int32_t i = 0; i < n; ++i) {
        const double nll = token_nll(logits.data() + (size_t)i * n_vocab, n_vocab, chunk[p0 + i + 1]);
        all.add(nll);
        this_chunk.add(nll);
      }
    }
    r.chunk_nll.push_back(this_chunk.mean());
    r.running_ppl.push_back(all.ppl());
    r.n_scored = all.count();
    r.ppl = all.ppl();
    r.ppl_stderr = all.ppl_stderr();
    r.mean_nll = all.mean();
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (on_chunk) on_chunk(c, r, r.seconds);
  }
  return r;
}

}  // namespace kvforge
