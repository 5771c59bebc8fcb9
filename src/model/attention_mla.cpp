// Multi-head Latent Attention (DeepSeek-V2/V3, SPEC.md §3), absorbed form:
// the cache holds one row [c_KV (d_c) | k_pe (RW)] per token and layer, and
// the H query heads attend to it as one MQA group:
//   q~_h = [W_UK,h^T q_nope,h | RoPE(q_pe,h) in its rope key's slot]   (d_c + RW)
//   o~_h = softmax(scale * q~_h . [c | k_pe]) c (d_c: V is the row's c part)
//   o_h  = W_UV,h o~_h                          (V), then W_o as usual.
// q~_h . [c | k_pe] = q_nope,h . (W_UK,h c) + q_pe,h . k_pe(h): exactly the
// decompressed attention's score, so only rounding differs from it.
// DeepSeek has one rope key shared by all heads (RW = R); a converted GQA
// model one per KV head (model/mla_converted.h), whose slots of q~_h other
// than its own are zero.
//
// Per-head projections (W_UK^T, W_UV) are matmuls over the batch's rows of
// that head, so each token's result is batch-invariant like every matmul;
// the attention runs through the shared fused kernels (ops/attention.h) with
// a view whose V is a prefix of the K rows.
//
// The naive path (--mla-attn naive|auto, model/attention_mla_naive.cpp)
// shares everything up to the cache write: the same rows are cached, and
// its queries are the heads' own [q_nope | q_pe].
#include <algorithm>

#include "model/context.h"
#include "ops/norm.h"

namespace kvforge {

void Context::attention_mla(int l, const std::vector<BatchRun>& runs, int32_t n) {
  const ModelConfig& c = model_.config();
  const MlaConfig& m = c.mla;
  const MlaWeights& W = model_.weights().layers[l].mla;
  const int H = c.n_head, dc = m.kv_lora_rank, R = m.qk_rope, P = m.qk_nope, V = m.v_head_dim;
  const int nk = m.n_rope_keys, rw = m.rope_width(), lat = dc + rw, qd = c.q_dim(), n_rot = c.rope.n_rot;
  const int lr = mla_row_, dv = mla_dv_;  // stored row and V widths (>= lat, dc: zero padding)
  auto bias = [](const Vec& b) { return Epilogue{b.empty() ? nullptr : b.data(), Activation::None}; };

  // Queries (direct, or through the compressed q_a with its norm) and the
  // latent rows [c_raw | kpe_raw], first products in one pool hand-off.
  {
    const WeightMatrix* Ws[2] = {m.q_lora_rank > 0 ? &W.wq_a : &W.wq, &W.wkv_a};
    float* ys[2] = {m.q_lora_rank > 0 ? qa_.data() : q_.data(), kv_.data()};
    const Epilogue eps[2] = {bias(W.bq), bias(W.bkv_a)};
    matmul_many(Ws, ys, 2, xn_.data(), n, pool_, scratch_, eps);
  }
  if (m.q_lora_rank > 0) {
    rms_norm(qa_.data(), W.q_a_norm.data(), qa_.data(), n, m.q_lora_rank, c.norm_eps);
    matmul(W.wq_b, qa_.data(), n, q_.data(), pool_, scratch_);
  }
  // Each rope-key pair's angle: the model RoPE's pair rope_pairs[j] (or j).
  for (int32_t t = 0; t < n; ++t)
    for (int j = 0; j < rw / 2; ++j) {
      const int src = W.rope_pairs.empty() ? j : W.rope_pairs[j];
      mla_cs_[(size_t)t * rw + 2 * j] = rope_cs_[(size_t)t * n_rot + 2 * src];
      mla_cs_[(size_t)t * rw + 2 * j + 1] = rope_cs_[(size_t)t * n_rot + 2 * src + 1];
    }
  if (lr > lat)  // spread the rows [n][lat] to [n][lr], last first (in place), padding zero
    for (int32_t t = n - 1; t >= 0; --t) {
      std::copy_backward(&kv_[(size_t)t * lat], &kv_[(size_t)t * lat + lat], &kv_[(size_t)t * lr + lat]);
      std::fill(&kv_[(size_t)t * lr + lat], &kv_[(size_t)(t + 1) * lr], 0.0f);
    }
  for (int32_t t = 0; t < n; ++t) {
    float* row = &kv_[(size_t)t * lr];
    if (!W.kv_a_norm.empty()) rms_norm(row, W.kv_a_norm.data(), row, 1, dc, c.norm_eps);  // c = RMSNorm(c_raw)
    for (int k = 0; k < nk; ++k) mla_rope_.apply(row + dc + k * R, 1, R, &mla_cs_[(size_t)t * rw + k * R]);
  }

  // Which path each run's queries take (--mla-attn), and each head's q_pe
  // rotated in place with its rope key's angles (both paths read it).
  bool any_naive = false;
  mla_rows_.clear();  // the rows to absorb
  for (int32_t row0 = 0; const BatchRun& r : runs) {
    const bool naive = params_.mla_attn == MlaAttn::Naive ||
                       (params_.mla_attn == MlaAttn::Auto && r.plan.n_tokens >= kMlaNaiveMinTokens);
    any_naive |= naive;
    if (params_.mla_attn != MlaAttn::Absorbed) std::fill_n(&mla_naive_.row_naive[row0], r.plan.n_tokens, naive);
    if (!naive || cache_->observes())
      for (int32_t t = row0; t < row0 + r.plan.n_tokens; ++t) mla_rows_.push_back(t);
    row0 += r.plan.n_tokens;
  }
  for (int32_t t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h)
      mla_rope_.apply(&q_[(size_t)t * qd + (size_t)h * c.head_dim_k + P], 1, R, &mla_cs_[(size_t)t * rw + h * nk / H * R]);

  // Absorb: q~_h = W_UK,h^T q_nope,h, q_pe,h in its key's slot, for the
  // absorbed rows (and for all when the cache scores rows with the queries:
  // token eviction sees the absorbed ones whatever the path). The heads
  // sharing a matrix (a KV group of a conversion) are stacked as its rows,
  // mla_block_ tokens per call: head_x_ [H][nb][P] -> head_y_ [H][nb][d_c].
  const std::vector<int32_t>& qrows = mla_rows_;
  if (nk > 1 || P == 0 || lr > lat)
    for (int32_t t : qrows) std::fill_n(&qlat_[(size_t)t * H * lr], (size_t)H * lr, 0.0f);
  for (size_t i0 = 0; i0 < qrows.size(); i0 += mla_block_) {
    const int32_t nb = (int32_t)std::min<size_t>(mla_block_, qrows.size() - i0);
    const int32_t* rows = &qrows[i0];
    if (P > 0) {
      for (int h = 0; h < H; ++h)
        for (int32_t i = 0; i < nb; ++i)
          std::copy_n(&q_[(size_t)rows[i] * qd + (size_t)h * c.head_dim_k], P, &head_x_[((size_t)h * nb + i) * P]);
      per_head_matmul(W.k_b, H, nb, P, dc);
    }
    for (int h = 0; h < H; ++h)
      for (int32_t i = 0; i < nb; ++i) {
        float* ql = &qlat_[((size_t)rows[i] * H + h) * lr];
        if (P > 0) std::copy_n(&head_y_[((size_t)h * nb + i) * dc], dc, ql);
        std::copy_n(&q_[(size_t)rows[i] * qd + (size_t)h * c.head_dim_k + P], R, ql + dc + h * nk / H * R);
      }
  }

  // Latent rows into the cache (V is inside them) and attention. The naive
  // path reads the heads' own queries and writes attn_ directly.
  AttnArgs args{qlat_.data(), (size_t)H * lr, olat_.data(), (size_t)H * dv, 1, H, lr, dv, c.attn_scale};
  const int U = (int)W.v_b.size();
  const AttnArgs naive{q_.data(), (size_t)qd, attn_.data(), (size_t)c.attn_dim(), U, H / U, c.head_dim_k, V,
                       c.attn_scale};
  if (any_naive) args.naive = &naive;
  write_and_attend(l, runs, kv_.data(), lr, nullptr, 0, args);

  // o_h = W_UV,h o~_h into attn_ ([n][H * V], W_o's input) for the absorbed
  // rows, likewise: head_x_ [H][nb][d_c] -> head_y_ [H][nb][V].
  if (any_naive) std::erase_if(mla_rows_, [&](int32_t t) { return mla_naive_.row_naive[t] != 0; });
  for (size_t i0 = 0; i0 < mla_rows_.size(); i0 += mla_block_) {
    const int32_t nb = (int32_t)std::min<size_t>(mla_block_, mla_rows_.size() - i0);
    const int32_t* rows = &mla_rows_[i0];
    for (int h = 0; h < H; ++h)
      for (int32_t i = 0; i < nb; ++i)
        std::copy_n(&olat_[((size_t)rows[i] * H + h) * dv], dc, &head_x_[((size_t)h * nb + i) * dc]);
    per_head_matmul(W.v_b, H, nb, dc, V);
    for (int h = 0; h < H; ++h)
      for (int32_t i = 0; i < nb; ++i)
        std::copy_n(&head_y_[((size_t)h * nb + i) * V], V, &attn_[(size_t)rows[i] * c.attn_dim() + (size_t)h * V]);
  }
}

// head_y_ [H][n][out] = mats[h * U / H] head_x_ [H][n][in] for the U
// matrices (U divides H): matrix u's input is the H/U heads' rows from
// u * (H/U) on, contiguous; each row's product is batch-invariant like any
// matmul, so stacking heads as rows changes no bit.
void Context::per_head_matmul(const std::vector<WeightMatrix>& mats, int H, int32_t n, int in, int out) {
  const int U = (int)mats.size(), rows = H / U * n;
  std::vector<const WeightMatrix*> ws(U);
  std::vector<const float*> xs(U);
  std::vector<float*> ys(U);
  for (int u = 0; u < U; ++u) {
    ws[u] = &mats[u];
    xs[u] = &head_x_[(size_t)u * rows * in];
    ys[u] = &head_y_[(size_t)u * rows * out];
  }
  matmul_each(ws.data(), xs.data(), ys.data(), U, rows, pool_, scratch_);
}

}  // namespace kvforge
