// The forward pass of a decoder-only transformer, for every architecture the
// registry loads (differences are data in ModelConfig, not branches on names).
#include "model/context.h"

#include <algorithm>
#include <cmath>

#include "kv/kv_layout.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/norm.h"
#include "util/error.h"

namespace kvforge {

namespace {

// fn(t0, t1) over token ranges: on the pool when there are enough tokens to
// pay for the hand-off (prefill), else here. Row-wise ops only, so the split
// changes no result.
template <class Fn>
void over_tokens(ThreadPool& pool, int32_t n, Fn&& fn) {
  constexpr int32_t kChunk = 16;
  if (pool.size() == 1 || n < 2 * kChunk) return fn(0, n);
  pool.parallel_for((n + kChunk - 1) / kChunk,
                    [&](int64_t i, int) { fn((int32_t)i * kChunk, std::min(n, (int32_t)(i + 1) * kChunk)); });
}

// y = norm(x) per token row ([n][d_model]).
void normalize(ThreadPool& pool, const ModelConfig& c, const Vec& w, const Vec& b, const float* x, float* y,
               int32_t n) {
  const int d = c.d_model;
  over_tokens(pool, n, [&](int32_t t0, int32_t t1) {
    const float* xs = x + (size_t)t0 * d;
    float* ys = y + (size_t)t0 * d;
    if (c.norm == NormKind::RMSNorm) rms_norm(xs, w.data(), ys, t1 - t0, d, c.norm_eps);
    else layer_norm(xs, w.data(), b.empty() ? nullptr : b.data(), ys, t1 - t0, d, c.norm_eps);
  });
}

// The residual add x += y over [n][d_model].
void add_residual(ThreadPool& pool, int d, float* x, const float* y, int32_t n) {
  over_tokens(pool, n, [&](int32_t t0, int32_t t1) {
    add_inplace(x + (size_t)t0 * d, y + (size_t)t0 * d, (int64_t)(t1 - t0) * d);
  });
}

// Optional per-head RMSNorm (empty w: none) of x: [n][n_heads][head_dim_k] (queries or keys), in place.
void norm_heads(ThreadPool& pool, const ModelConfig& c, const Vec& w, float* x, int32_t n, int n_heads) {
  if (w.empty()) return;
  const size_t row = (size_t)n_heads * c.head_dim_k;
  over_tokens(pool, n, [&](int32_t t0, int32_t t1) {
    rms_norm(x + t0 * row, w.data(), x + t0 * row, (int64_t)(t1 - t0) * n_heads, c.head_dim_k, c.norm_eps);
  });
}

// s -> cap * tanh(s / cap) over n values (soft-capping; cap 0 = off).
void softcap_inplace(float* s, size_t n, float cap) {
  if (cap <= 0) return;
  for (size_t i = 0; i < n; ++i) s[i] = cap * std::tanh(s[i] / cap);
}

// An optional bias (empty: none) and activation, applied inside the matmul.
Epilogue epilogue(const Vec& bias, Activation act = Activation::None) {
  return {bias.empty() ? nullptr : bias.data(), act};
}

}  // namespace

Context::Context(const Model& model, const ContextParams& params)
    : model_(model),
      params_(params),
      pool_(params.n_threads > 0 ? params.n_threads : default_thread_count()) {
  const ModelConfig& c = model.config();
  if (params_.n_ctx <= 0) params_.n_ctx = std::min(c.n_ctx_train > 0 ? c.n_ctx_train : 4096, 4096);
  if (c.position == PositionKind::Learned && params_.n_ctx > c.n_ctx_train)
    fail("context size {} exceeds the {} learned positions of this model", params_.n_ctx, c.n_ctx_train);
  if (params_.n_batch <= 0) fail("batch size must be positive");
  KvLayout layout = resolve_kv_layout(params_.kv, c.kv_shape(), params_.n_ctx);
  for (int l = 0; l < c.n_layer; ++l) limit_layer_window(layout, l, c.layers[l].window);
  if (c.attn_softcap > 0 && kv_storage_quantized(params_.kv.storage))
    fail("--kv {}: this model soft-caps attention scores, which needs f16 or f32 KV rows", params_.kv.describe());
  cache_ = make_kv_cache(layout);

  const size_t B = params_.n_batch;
  x_.resize(B * c.d_model);
  xn_.resize(B * c.d_model);
  q_.resize(B * c.q_dim());
  k_.resize(B * c.k_dim());
  v_.resize(B * c.v_dim());
  attn_.resize(B * c.attn_dim());
  tmp_.resize(B * c.d_model);
  const size_t F = std::min<size_t>(B, kFfnSlice);
  if (c.ffn != FfnKind::GELU) gate_.resize(F * c.d_ff);
  up_.resize(F * c.d_ff);
  if (c.position == PositionKind::Rope) rope_cs_.resize(B * c.rope.n_rot);
  for (const LayerConfig& lc : c.layers)
    if (lc.rope == LayerRope::Local) rope_local_cs_.resize(B * c.rope_local.n_rot);
}

void Context::eval(const TokenId* tokens, int32_t n, float* logits, bool all_logits) {
  const int32_t n_vocab = model_.config().n_vocab;
  if (n <= 0) fail("nothing to evaluate");
  if (n > cache_->room())
    fail("context full: {} cached + {} new tokens exceed the context size of {} (raise -c or use --kv window:W)",
         cache_->n_past(), n, cache_->n_past() + cache_->room());
  if (model_.config().position == PositionKind::Learned && (int64_t)cache_->n_past() + n > model_.config().n_ctx_train)
    fail("positions beyond the {} learned positions of this model", model_.config().n_ctx_train);
  for (int32_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab) fail("token id {} out of range [0, {})", tokens[i], n_vocab);
  for (int32_t i0 = 0, nb = 0; i0 < n; i0 += nb) {
    nb = std::min(params_.n_batch, n - i0);
    const bool last = i0 + nb == n;
    float* out = all_logits ? logits + (size_t)i0 * n_vocab : (last ? logits : nullptr);
    forward(tokens + i0, nb, out, all_logits);
  }
}

void Context::forward(const TokenId* tokens, int32_t n, float* logits, bool all_logits) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int d = c.d_model, qd = c.q_dim(), kd = c.k_dim();
  const KvPlan plan = cache_->plan(n);

  // Token (and learned position) embeddings.
  for (int32_t t = 0; t < n; ++t) {
    get_row(w.tok_embd, tokens[t], &x_[(size_t)t * d]);
    if (c.embd_scale != 0)
      for (int i = 0; i < d; ++i) x_[(size_t)t * d + i] *= c.embd_scale;
    if (c.position == PositionKind::Learned) {
      get_row(w.pos_embd, plan.pos0 + t, tmp_.data());
      add_inplace(&x_[(size_t)t * d], tmp_.data(), d);
    }
  }
  // RoPE angles of each token, computed once for all layers.
  const Rope rope(c.rope), rope_local(c.rope_local);
  const int n_rot = c.rope.n_rot, n_rot_local = c.rope_local.n_rot;
  if (c.position == PositionKind::Rope)
    for (int32_t t = 0; t < n; ++t) rope.angles(plan.pos0 + t, &rope_cs_[(size_t)t * n_rot]);
  if (!rope_local_cs_.empty())
    for (int32_t t = 0; t < n; ++t) rope_local.angles(plan.pos0 + t, &rope_local_cs_[(size_t)t * n_rot_local]);

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = w.layers[l];

    // Attention block: x += Wo · attn(norm(x)).
    normalize(pool_, c, L.attn_norm, L.attn_norm_b, x_.data(), xn_.data(), n);
    {  // Q, K and V in one pool hand-off
      const WeightMatrix* Ws[3] = {&L.wq, &L.wk, &L.wv};
      float* ys[3] = {q_.data(), k_.data(), v_.data()};
      const Epilogue eps[3] = {epilogue(L.bq), epilogue(L.bk), epilogue(L.bv)};
      matmul_many(Ws, ys, 3, xn_.data(), n, pool_, scratch_, eps);
    }
    norm_heads(pool_, c, L.q_norm, q_.data(), n, c.n_head);
    norm_heads(pool_, c, L.k_norm, k_.data(), n, c.n_kv_head);
    if (c.position == PositionKind::Rope && c.layers[l].rope != LayerRope::None) {
      const bool local = c.layers[l].rope == LayerRope::Local;
      const Rope& r = local ? rope_local : rope;
      const float* cs = local ? rope_local_cs_.data() : rope_cs_.data();
      const int nr = local ? n_rot_local : n_rot;
      for (int32_t t = 0; t < n; ++t) {
        r.apply(&q_[(size_t)t * qd], c.n_head, c.head_dim_k, cs + (size_t)t * nr);
        r.apply(&k_[(size_t)t * kd], c.n_kv_head, c.head_dim_k, cs + (size_t)t * nr);
      }
    }
    write_and_attend(l, plan);
    matmul(L.wo, attn_.data(), n, tmp_.data(), pool_, scratch_, epilogue(L.bo));
    if (!L.attn_post_norm.empty()) normalize(pool_, c, L.attn_post_norm, {}, tmp_.data(), tmp_.data(), n);
    add_residual(pool_, d, x_.data(), tmp_.data(), n);

    // Feed-forward block: x += down(act(norm(x))), kFfnSlice tokens at a
    // time: the [tokens][d_ff] buffers are the largest activations, and the
    // batch-invariant kernels give the same result for any slicing.
    normalize(pool_, c, L.ffn_norm, L.ffn_norm_b, x_.data(), xn_.data(), n);
    for (int32_t s0 = 0, ns = 0; s0 < n; s0 += ns) {
      ns = std::min(kFfnSlice, n - s0);
      const float* xs = &xn_[(size_t)s0 * d];
      float* out = &tmp_[(size_t)s0 * d];
      if (c.ffn != FfnKind::GELU) {  // gate and up in one pool hand-off
        const bool geglu = c.ffn == FfnKind::GeGLU;
        const WeightMatrix* Ws[2] = {&L.w_gate, &L.w_up};
        float* ys[2] = {gate_.data(), up_.data()};
        const Epilogue eps[2] = {{nullptr, geglu ? Activation::GELU : Activation::None}, epilogue(L.b_up)};
        matmul_many(Ws, ys, 2, xs, ns, pool_, scratch_, eps);
        if (geglu) mul_inplace(gate_.data(), up_.data(), (int64_t)ns * c.d_ff);
        else swiglu_inplace(gate_.data(), up_.data(), (int64_t)ns * c.d_ff);
        matmul(L.w_down, gate_.data(), ns, out, pool_, scratch_, epilogue(L.b_down));
      } else {
        matmul(L.w_up, xs, ns, up_.data(), pool_, scratch_, epilogue(L.b_up, Activation::GELU));
        matmul(L.w_down, up_.data(), ns, out, pool_, scratch_, epilogue(L.b_down));
      }
    }
    if (!L.ffn_post_norm.empty()) normalize(pool_, c, L.ffn_post_norm, {}, tmp_.data(), tmp_.data(), n);
    add_residual(pool_, d, x_.data(), tmp_.data(), n);
  }
  cache_->commit(plan);

  // Output head, only for the rows whose logits are wanted.
  if (!logits) return;
  const int32_t first = all_logits ? 0 : n - 1;
  const int32_t rows = n - first;
  normalize(pool_, c, w.out_norm, w.out_norm_b, &x_[(size_t)first * d], xn_.data(), rows);
  matmul(w.output, xn_.data(), rows, logits, pool_, scratch_);
  softcap_inplace(logits, (size_t)rows * c.n_vocab, c.logit_softcap);
}

// Heads that take the whole batch in one wave (full history, or a ring with
// room for it) are written at once and attended together. A streaming head
// whose ring fills up takes one token per wave (a later token would evict a
// row an earlier query still sees), so each such head runs its tokens in
// order, wave by wave, as one task of its own: a small ring never forces the
// full-history heads into one-token waves. Every query's result depends only
// on its view, so the split changes no bit.
void Context::write_and_attend(int layer, const KvPlan& plan) {
  const ModelConfig& c = model_.config();
  const int nh = c.n_kv_head, kd = c.k_dim(), vd = c.v_dim();
  whole_heads_.resize(nh);
  seq_heads_.clear();
  for (int h = 0; h < nh; ++h) {
    whole_heads_[h] = cache_->max_wave(layer, h, plan.pos0) >= plan.n_tokens;
    if (!whole_heads_[h]) seq_heads_.push_back(h);
  }
  if (seq_heads_.empty()) {
    cache_->write(layer, plan, k_.data(), v_.data());
    return attention(layer, plan, nullptr);
  }
  if ((int)seq_heads_.size() < nh) {
    for (int h = 0; h < nh; ++h)
      if (whole_heads_[h]) cache_->write_head(layer, h, plan, k_.data(), v_.data());
    attention(layer, plan, whole_heads_.data());
  }
  const int qd = c.q_dim(), od = c.attn_dim(), group = c.n_head / c.n_kv_head;
  pool_.parallel_for((int64_t)seq_heads_.size(), [&](int64_t i, int) {
    const int h = seq_heads_[i];
    for (int32_t i0 = 0, nw = 0; i0 < plan.n_tokens; i0 += nw) {
      nw = std::min(plan.n_tokens - i0, cache_->max_wave(layer, h, plan.pos0 + i0));
      cache_->write_head(layer, h, {plan.pos0 + i0, nw}, &k_[(size_t)i0 * kd], &v_[(size_t)i0 * vd]);
      for (int32_t t = i0; t < i0 + nw; ++t)
        attend_head(layer, h, plan.pos0 + t, &q_[(size_t)t * qd + (size_t)h * group * c.head_dim_k],
                    &attn_[(size_t)t * od + (size_t)h * group * c.head_dim_v]);
    }
  });
}

namespace {

// out = alpha * full + (1 - alpha) * stream, element-wise (one formula for
// every path, so a gated head's bits do not depend on the batch).
void blend_gate(float alpha, float* full, const float* stream, size_t n) {
  for (size_t i = 0; i < n; ++i) full[i] = alpha * full[i] + (1.0f - alpha) * stream[i];
}

}  // namespace

void Context::attend_head(int layer, int kv_head, int32_t pos, const float* q, float* out) {
  const ModelConfig& c = model_.config();
  const int group = c.n_head / c.n_kv_head;
  const float alpha = cache_->gate(layer, kv_head);
  if (alpha == 1.0f) return attend(q, group, cache_->view(layer, kv_head, pos), c.attn_scale, out);
  const size_t n = (size_t)group * c.head_dim_v;
  if (alpha == 0.0f) return attend(q, group, cache_->stream_view(layer, kv_head, pos), c.attn_scale, out);
  thread_local std::vector<float> stream;  // [group][head_dim_v]
  stream.resize(n);
  attend(q, group, cache_->stream_view(layer, kv_head, pos), c.attn_scale, stream.data());
  attend(q, group, cache_->view(layer, kv_head, pos), c.attn_scale, out);
  blend_gate(alpha, out, stream.data(), n);
}

// Every (token, KV head) pair is independent: the query heads of the group
// read the head's cached rows once (see ops/attention.h). With many tokens
// (prefill) a task is one pair; with few (decode) a task is one chunk of a
// pair's rows, so that a long cache keeps every thread busy, and the
// partial results are merged afterwards. Both run the same chunk kernel and
// the same merge, so a query's result does not depend on the batch.
void Context::attention(int layer, const KvPlan& plan, const uint8_t* heads) {
  const ModelConfig& c = model_.config();
  const int group = c.n_head / c.n_kv_head;
  const int qd = c.q_dim(), od = c.attn_dim(), dv = c.head_dim_v;
  const int64_t n_pairs = (int64_t)plan.n_tokens * c.n_kv_head;
  // Where a (token, KV head) pair's query heads start in q_, and their outputs in attn_.
  auto q_off = [&](int64_t pair) {
    return (size_t)(pair / c.n_kv_head) * qd + (size_t)(pair % c.n_kv_head) * group * c.head_dim_k;
  };
  auto o_off = [&](int64_t pair) {
    return (size_t)(pair / c.n_kv_head) * od + (size_t)(pair % c.n_kv_head) * group * dv;
  };
  auto view_of = [&](int64_t pair) {
    return cache_->view(layer, (int)(pair % c.n_kv_head), plan.pos0 + (int32_t)(pair / c.n_kv_head));
  };
  // Soft-capped scores have one (scalar) chunk kernel, used by the split path.
  const float cap = c.attn_softcap;
  if (cap == 0 && n_pairs >= 4 * (int64_t)pool_.size()) {
    // Prefill: a task is a run of up to kAttnMaxTokens consecutive tokens
    // (cut at positions that are multiples of it, so that their views share
    // all rows but the last tile's) for one KV head.
    const int32_t n_tok = plan.n_tokens, kb = kAttnMaxTokens;
    const int32_t n_blocks = (plan.pos0 + n_tok + kb - 1) / kb - plan.pos0 / kb;
    pool_.parallel_for((int64_t)n_blocks * c.n_kv_head, [&](int64_t item, int) {
      const int32_t b = (int32_t)(item / c.n_kv_head), h = (int32_t)(item % c.n_kv_head);
      if (heads && !heads[h]) return;
      const int32_t t0 = std::max(0, (plan.pos0 / kb + b) * kb - plan.pos0);
      const int32_t t1 = std::min(n_tok, (plan.pos0 / kb + b + 1) * kb - plan.pos0);
      if (cache_->gate(layer, h) != 1.0f) {  // soft gate: full and streaming views, blended
        for (int32_t t = t0; t < t1; ++t) {
          const int64_t pair = (int64_t)t * c.n_kv_head + h;
          attend_head(layer, h, plan.pos0 + t, &q_[q_off(pair)], &attn_[o_off(pair)]);
        }
        return;
      }
      const float* qs[kAttnMaxTokens];
      float* outs[kAttnMaxTokens];
      KvView views[kAttnMaxTokens];
      for (int32_t t = t0; t < t1; ++t) {
        const int64_t pair = (int64_t)t * c.n_kv_head + h;
        qs[t - t0] = &q_[q_off(pair)];
        outs[t - t0] = &attn_[o_off(pair)];
        views[t - t0] = view_of(pair);
      }
      attend_tokens(qs, views, t1 - t0, group, c.attn_scale, outs);
    });
    return;
  }
  // Split path: list every (pair, chunk), compute the partials, merge per pair.
  std::vector<AttnItem>& items = attn_items_;
  std::vector<AttnChunk>& chunks = attn_chunks_;
  items.clear();
  std::vector<int64_t>& first = attn_first_;  // [n_pairs + 1] item ranges
  first.assign(n_pairs + 1, 0);
  auto gate_of = [&](int64_t pair) { return cache_->gate(layer, (int)(pair % c.n_kv_head)); };
  for (int64_t p = 0; p < n_pairs; ++p) {
    if ((!heads || heads[p % c.n_kv_head]) && gate_of(p) != 0.0f) {  // gate 0: the streaming view only
      attn_chunks(view_of(p), chunks);
      for (const AttnChunk& ch : chunks) items.push_back({p, ch});
    }
    first[p + 1] = (int64_t)items.size();
  }
  const size_t pf = attn_partial_floats(group, dv);
  if (attn_parts_.size() < pf * items.size()) attn_parts_.resize(pf * items.size());
  pool_.parallel_for((int64_t)items.size(), [&](int64_t i, int) {
    const AttnItem& it = items[i];
    if (cap > 0)
      attend_chunk_softcap(&q_[q_off(it.pair)], group, view_of(it.pair), it.chunk, c.attn_scale, cap,
                           &attn_parts_[pf * i]);
    else
      attend_chunk(&q_[q_off(it.pair)], group, view_of(it.pair), it.chunk, c.attn_scale, &attn_parts_[pf * i]);
  });
  for (int64_t p = 0; p < n_pairs; ++p) {
    if (heads && !heads[p % c.n_kv_head]) continue;
    float* out = &attn_[o_off(p)];
    const float alpha = gate_of(p);
    if (alpha != 0.0f)
      attend_merge(&attn_parts_[pf * first[p]], (int)(first[p + 1] - first[p]), group, view_of(p), out);
    if (alpha == 1.0f) continue;
    // Soft gate: the streaming view (a few rows) here, then the same blend
    // as attend_head.
    const int h = (int)(p % c.n_kv_head);
    const int32_t pos = plan.pos0 + (int32_t)(p / c.n_kv_head);
    if (alpha == 0.0f) {
      attend(&q_[q_off(p)], group, cache_->stream_view(layer, h, pos), c.attn_scale, out);
      continue;
    }
    attn_stream_.resize((size_t)group * dv);
    attend(&q_[q_off(p)], group, cache_->stream_view(layer, h, pos), c.attn_scale, attn_stream_.data());
    blend_gate(alpha, out, attn_stream_.data(), attn_stream_.size());
  }
}

}  // namespace kvforge
