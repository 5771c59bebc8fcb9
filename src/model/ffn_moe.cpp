// Mixture-of-experts feed-forward (DeepSeek-V2/V3): a router scores the
// experts per token (softmax or sigmoid), the top n_expert_used are chosen
// (by score + the optional selection bias exp_probs_b, V3's bias-corrected
// choice; their weights are the unbiased scores, optionally renormalised,
// times weights_scale), each chosen SwiGLU expert runs on the tokens that
// chose it, and the shared experts run on every token:
//   out = sum_k w_k expert_{e_k}(x) + shared(x)
//
// Batch invariance: an expert's matmul gives a token's row the same bits
// whichever other tokens share the expert; each token's outputs are then
// summed in its own selection order (best first), so nothing depends on the
// batch.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/context.h"
#include "ops/activation.h"

namespace kvforge {

namespace {

// Chooses the k experts of one token. scores: [n_expert] router logits,
// replaced by the gating probabilities. sel/w: [k], best first.
void route(const MoeConfig& e, const Vec& bias, float* scores, int32_t* sel, float* w) {
  const int n = e.n_expert, k = e.n_expert_used;
  if (e.gating == MoeGating::Softmax) {
    const float mx = *std::max_element(scores, scores + n);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += scores[i] = std::exp(scores[i] - mx);
    for (int i = 0; i < n; ++i) scores[i] = (float)(scores[i] / sum);
  } else {
    for (int i = 0; i < n; ++i) scores[i] = 1.0f / (1.0f + std::exp(-scores[i]));
  }
  auto choice = [&](int i) { return bias.empty() ? scores[i] : scores[i] + bias[i]; };
  std::vector<int32_t> order(n);  // small: n_expert
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return choice(a) > choice(b) || (choice(a) == choice(b) && a < b);
  });
  float sum = 0;
  for (int j = 0; j < k; ++j) {
    sel[j] = order[j];
    w[j] = scores[order[j]];
    sum += w[j];
  }
  for (int j = 0; j < k; ++j) w[j] = (e.weights_norm ? w[j] / sum : w[j]) * e.weights_scale;
}

}  // namespace

void Context::ffn_moe(const LayerWeights& L, const float* xs, int32_t ns, float* out) {
  const ModelConfig& c = model_.config();
  const MoeConfig& e = c.moe;
  const MoeWeights& W = L.moe;
  const int d = c.d_model, k = e.n_expert_used;

  matmul(W.gate_inp, xs, ns, router_.data(), pool_, scratch_);  // [ns][n_expert]
  for (int32_t t = 0; t < ns; ++t)
    route(e, W.exp_probs_b, &router_[(size_t)t * e.n_expert], &sel_[(size_t)t * k], &sel_w_[(size_t)t * k]);

  // Each expert on the tokens that chose it; outputs land in the token's slot.
  std::vector<int32_t> rows;  // (t * k + slot) of the expert's tokens
  for (int x = 0; x < e.n_expert; ++x) {
    rows.clear();
    for (int32_t i = 0; i < ns * k; ++i)
      if (sel_[i] == x) rows.push_back(i);
    if (rows.empty()) continue;
    const int32_t m = (int32_t)rows.size();
    for (int32_t r = 0; r < m; ++r) std::copy_n(xs + (size_t)(rows[r] / k) * d, d, &xe_[(size_t)r * d]);
    gated_ffn(W.gate[x], W.up[x], W.down[x], {}, {}, false, xe_.data(), m, ye_.data());
    for (int32_t r = 0; r < m; ++r) std::copy_n(&ye_[(size_t)r * d], d, &slot_out_[(size_t)rows[r] * d]);
  }
  for (int32_t t = 0; t < ns; ++t) {
    float* o = out + (size_t)t * d;
    std::fill(o, o + d, 0.0f);
    for (int j = 0; j < k; ++j) {
      const float wj = sel_w_[(size_t)t * k + j];
      const float* y = &slot_out_[((size_t)t * k + j) * d];
      for (int i = 0; i < d; ++i) o[i] += wj * y[i];
    }
  }
  if (W.gate_shexp.rows == 0) return;
  gated_ffn(W.gate_shexp, W.up_shexp, W.down_shexp, {}, {}, false, xs, ns, ye_.data());
  add_inplace(out, ye_.data(), (int64_t)ns * d);
}

}  // namespace kvforge
