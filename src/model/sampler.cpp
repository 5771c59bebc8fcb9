#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/error.h"

namespace kvforge {

namespace {

// Strict total order "more likely first": equal logits go to the lower id, so
// the top-k heap, nth_element and sort give the same result on every
// standard library.
constexpr auto more_likely = [](const auto& a, const auto& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
};

// 53 random bits -> [0, 1). Built by hand because the output of
// std::uniform_real_distribution is implementation-defined.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

void SamplingParams::validate() const {
  // Written as !(ok) so NaN fails too.
  if (!(temperature >= 0.0f) || std::isinf(temperature))
    fail("sampling: temperature must be a finite number >= 0 (0 = greedy), got {}", temperature);
  if (top_k < 0) fail("sampling: top_k must be >= 0 (0 = off), got {}", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("sampling: top_p must be in (0, 1] (1 = off), got {}", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("sampling: min_p must be in [0, 1] (0 = off), got {}", min_p);
  if (!(repeat_penalty > 0.0f) || std::isinf(repeat_penalty))
    fail("sampling: repeat_penalty must be a finite number > 0 (1 = off), got {}", repeat_penalty);
  if (repeat_last_n < 0) fail("sampling: repeat_last_n must be >= 0, got {}", repeat_last_n);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

void Sampler::reset() {
  recent_.clear();
  rng_.seed(params_.seed);
}

void Sampler::accept(TokenId id) {
  if (params_.repeat_last_n == 0) return;
  recent_.push_back(id);
  while (recent_.size() > static_cast<size_t>(params_.repeat_last_n)) recent_.pop_front();
}

void Sampler::apply_repeat_penalty(int n_vocab) {
  const float penalty = params_.repeat_penalty;
  if (penalty == 1.0f || recent_.empty()) return;
  // Each distinct token is penalised once, however often it repeats.
  scratch_.assign(recent_.begin(), recent_.end());
  std::sort(scratch_.begin(), scratch_.end());
  scratch_.erase(std::unique(scratch_.begin(), scratch_.end()), scratch_.end());
  for (TokenId id : scratch_) {
    if (id < 0 || id >= n_vocab) fail("sampling: accepted token {} is outside the vocabulary of {} tokens", id, n_vocab);
    float& l = logits_[id];
    l = l > 0.0f ? l / penalty : l * penalty;
  }
}

// Nucleus cut on cand_, whose weights sum to z. Sorts only as much of the
// front as the cut needs, doubling the sorted prefix each time: with a peaked
// distribution that is a few dozen tokens, not the whole vocabulary.
void Sampler::keep_top_p(double z, bool sorted) {
  constexpr auto cmp = more_likely;
  const size_t n = cand_.size();
  const double target = static_cast<double>(params_.top_p) * z;
  size_t done = sorted ? n : 0;
  size_t i = 0;
  double cum = 0.0;
  while (i < n) {
    if (i == done) {
      // Select the next chunk in linear time, then sort only the chunk.
      size_t next = std::min(n, std::max<size_t>(64, done * 2));
      if (next < n) std::nth_element(cand_.begin() + done, cand_.begin() + (next - 1), cand_.end(), cmp);
      std::sort(cand_.begin() + done, cand_.begin() + next, cmp);
      done = next;
    }
    cum += cand_[i].w;
    ++i;
    if (cum >= target) break;
  }
  cand_.resize(i);
}

// Top-k in one pass over the logits: a heap of the k best seen so far, worst
// on top. For logits in no particular order few tokens beat the k-th best, so
// this costs about one comparison per token (cheaper than nth_element).
// Scanning ids upwards, an equal logit never displaces an earlier id.
void Sampler::select_top_k(int k) {
  constexpr auto cmp = more_likely;
  const int n = static_cast<int>(logits_.size());
  cand_.clear();
  for (int i = 0; i < k; ++i) cand_.push_back({i, logits_[i], 0.0});
  std::make_heap(cand_.begin(), cand_.end(), cmp);
  for (int i = k; i < n; ++i) {
    if (!(logits_[i] > cand_.front().logit)) continue;
    std::pop_heap(cand_.begin(), cand_.end(), cmp);
    cand_.back() = {i, logits_[i], 0.0};
    std::push_heap(cand_.begin(), cand_.end(), cmp);
  }
  std::sort(cand_.begin(), cand_.end(), cmp);
}

void Sampler::load(const float* logits, int n_vocab) {
  if (logits == nullptr || n_vocab <= 0) fail("sampling: no logits (n_vocab = {})", n_vocab);
  logits_.assign(logits, logits + n_vocab);
  for (int i = 0; i < n_vocab; ++i) {
    // -inf is a legitimate "banned token"; NaN / +inf mean a broken forward pass.
    if (std::isnan(logits_[i]) || logits_[i] == std::numeric_limits<float>::infinity())
      fail("sampling: logit of token {} is {}", i, logits_[i]);
  }
  apply_repeat_penalty(n_vocab);
}

void Sampler::tempered_logits(const float* logits, int n_vocab, std::vector<float>& out) {
  load(logits, n_vocab);
  const float t = params_.temperature > 0.0f ? params_.temperature : 1.0f;
  out.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) out[i] = logits_[i] / t;
}

double Sampler::build(const float* logits, int n_vocab) {
  load(logits, n_vocab);

  if (params_.temperature <= 0.0f) {
    // max_element returns the first maximum: ties go to the lowest id.
    const auto best = std::max_element(logits_.begin(), logits_.end());
    if (*best == -std::numeric_limits<float>::infinity()) fail("sampling: every logit is -inf");
    cand_.assign(1, {static_cast<TokenId>(best - logits_.begin()), *best, 1.0});
    return 1.0;
  }

  bool sorted = false;
  const int k = params_.top_k;
  if (k > 0 && k < n_vocab) {
    select_top_k(k);
    sorted = true;
  } else {
    cand_.resize(n_vocab);
    for (int i = 0; i < n_vocab; ++i) cand_[i] = {i, logits_[i], 0.0};
  }

  float max_logit = -std::numeric_limits<float>::infinity();
  for (const Candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
  if (max_logit == -std::numeric_limits<float>::infinity()) fail("sampling: every logit is -inf");

  // Sums run over cand_ in id order or sorted order, never in an order left
  // by a library algorithm, so they are bit-identical everywhere.
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  double z = 0.0;
  for (Candidate& c : cand_) {
    c.w = std::exp((static_cast<double>(c.logit) - max_logit) * inv_t);
    z += c.w;
  }

  // min-p before top-p: both keep a prefix of the sorted order (p_max is the
  // same before and after the nucleus cut, and the ratio p / p_max does not
  // care about renormalisation), so the result is the shorter prefix either
  // way. Filtering first is linear and shrinks what top-p must sort.
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p;  // p_max has weight exp(0) = 1
    cand_.erase(std::remove_if(cand_.begin(), cand_.end(), [&](const Candidate& c) { return c.w < threshold; }),
                cand_.end());
  }
  if (params_.top_p < 1.0f) keep_top_p(z, sorted);

  double total = 0.0;
  for (const Candidate& c : cand_) total += c.w;
  return total;
}

TokenId Sampler::sample(const float* logits, int n_vocab) {
  const double total = build(logits, n_vocab);
  if (params_.temperature <= 0.0f) return cand_[0].id;
  // Exactly one uniform per sampled token, even when one candidate is left,
  // so the random stream's position depends only on the step count.
  const double target = uniform01(rng_) * total;
  double cum = 0.0;
  for (const Candidate& c : cand_) {
    cum += c.w;
    if (cum > target) return c.id;
  }
  // Rounding put target at the very end: take the last token that can be drawn.
  for (auto it = cand_.rbegin(); it != cand_.rend(); ++it)
    if (it->w > 0.0) return it->id;
  return cand_.back().id;
}

std::vector<TokenProb> Sampler::distribution(const float* logits, int n_vocab) {
  const double total = build(logits, n_vocab);
  std::vector<TokenProb> out;
  out.reserve(cand_.size());
  for (const Candidate& c : cand_)
    if (c.w > 0.0) out.push_back({c.id, c.w / total});
  return out;
}

}  // namespace kvforge
