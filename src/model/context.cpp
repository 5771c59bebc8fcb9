// The forward pass of a decoder-only transformer, for every architecture the
// registry loads (differences are data in ModelConfig, not branches on names).
#include "model/context.h"

#include <algorithm>
#include <cmath>

#include "kv/kv_layout.h"
#include "model/block_seam.h"
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
void normalize(ThreadPool& pool, OpTimer* tm, const ModelConfig& c, const Vec& w, const Vec& b, const float* x,
               float* y, int32_t n) {
  OpScope timed(tm, Op::Norm);
  const int d = c.d_model;
  over_tokens(pool, n, [&](int32_t t0, int32_t t1) { norm_rows(c, w, b, x + (size_t)t0 * d, y + (size_t)t0 * d, t1 - t0); });
}

// The seam after a block (model/block_seam.h) over [n][d_model]: y =
// post(y), x += y, xn = norm(x) with w, b (w null: the last layer, no norm).
// Timed as a norm (the residual add inside it) unless there is no norm.
void residual_norm(ThreadPool& pool, OpTimer* tm, const ModelConfig& c, const Vec& post, float* y, float* x,
                   const Vec* w, const Vec* b, float* xn, int32_t n) {
  OpScope timed(tm, w ? Op::Norm : Op::Residual);
  const size_t d = c.d_model;
  over_tokens(pool, n, [&](int32_t t0, int32_t t1) {
    residual_norm_rows(c, post, y + t0 * d, x + t0 * d, w, b, xn + t0 * d, t1 - t0);
  });
}

// Optional per-head RMSNorm (empty w: none) of x: [n][n_heads][head_dim_k] (queries or keys), in place.
void norm_heads(ThreadPool& pool, OpTimer* tm, const ModelConfig& c, const Vec& w, float* x, int32_t n,
                int n_heads) {
  if (w.empty()) return;
  OpScope timed(tm, Op::QkNorm);
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

int32_t default_context_size(const ModelConfig& c) { return std::min(c.n_ctx_train > 0 ? c.n_ctx_train : 4096, 4096); }

namespace {

// The policy resolved for the model: its sliding-window layers keep only their window.
KvLayout model_kv_layout(const ModelConfig& c, const KvPolicy& kv, int32_t n_ctx) {
  KvLayout layout = resolve_kv_layout(kv, c.kv_shape(), n_ctx);
  for (int l = 0; l < c.n_layer; ++l) limit_layer_window(layout, l, c.layers[l].window);
  return layout;
}

}  // namespace

std::unique_ptr<PagedKvCache> make_paged_cache(const ModelConfig& c, ContextParams& params, int32_t n_seqs,
                                               int32_t n_blocks) {
  if (params.n_ctx <= 0) params.n_ctx = default_context_size(c);
  const KvLayout layout = model_kv_layout(c, params.kv, params.n_ctx);
  if (n_blocks <= 0) n_blocks = n_seqs * PagedKvCache::blocks_to_reserve(layout, params.n_ctx, params.n_batch);
  return std::make_unique<PagedKvCache>(layout, params.n_ctx, n_blocks, n_seqs);
}

Context::Context(const Model& model, const ContextParams& params) : Context(model, params, nullptr) {}

Context::Context(const Model& model, const ContextParams& params, std::unique_ptr<KvCache> cache)
    : model_(model),
      params_(params),
      pool_(params.n_threads > 0 ? params.n_threads : default_thread_count()),
      cache_(std::move(cache)),
      rope_local_(model.config().rope_local) {
  const ModelConfig& c = model.config();
  if (params_.n_ctx <= 0) params_.n_ctx = default_context_size(c);
  if (c.position == PositionKind::Learned && params_.n_ctx > c.n_ctx_train)
    fail("context size {} exceeds the {} learned positions of this model", params_.n_ctx, c.n_ctx_train);
  if (params_.n_batch <= 0) fail("batch size must be positive");
  if (c.attn_softcap > 0 && kv_storage_quantized(params_.kv.storage))
    fail("--kv {}: this model soft-caps attention scores, which needs f16 or f32 KV rows", params_.kv.describe());
  if (cache_) {  // built by the caller: it must keep the model's per-layer windows (make_paged_cache does)
    for (int l = 0; l < c.n_layer; ++l) {
      const LayerConfig& lc = c.layers[l];
      for (int h = 0; h < c.n_kv_head && lc.window > 0; ++h)  // a full-history head takes any wave
        if (cache_->max_wave(l, h, lc.window) == INT32_MAX && cache_->capacity() > lc.window)
          fail("layer {} attends to a sliding window of {} tokens, which this cache does not keep", l, lc.window);
    }
  } else {
    cache_ = make_kv_cache(model_kv_layout(c, params_.kv, params_.n_ctx));
  }

  const size_t B = params_.n_batch;
  x_.resize(B * c.d_model);
  xn_.resize(B * c.d_model);
  q_.resize(B * c.q_dim());
  attn_.resize(B * c.attn_dim());
  tmp_.resize(B * c.d_model);
  const size_t F = std::min<size_t>(B, kFfnSlice);
  bool any_mla = false, any_moe = false, any_gqa = false;
  for (const LayerConfig& lc : c.layers) {
    any_mla |= lc.attn == AttnBlock::MLA;
    any_gqa |= lc.attn == AttnBlock::GQA;
    any_moe |= lc.ffn == FfnBlock::MoE;
  }
  if (any_gqa) {
    k_.resize(B * c.k_dim());
    v_.resize(B * c.v_dim());
  }
  size_t ff = c.d_ff;
  if (any_moe) ff = std::max<size_t>({ff, (size_t)c.moe.d_ff_exp, (size_t)c.moe.n_expert_shared * c.moe.d_ff_exp});
  if (c.ffn != FfnKind::GELU) gate_.resize(F * ff);
  up_.resize(F * ff);
  RopeParams rope = c.rope;
  if (!c.rope_factors_long.empty() && params_.n_ctx > c.rope_long_ctx) rope.freq_factors = c.rope_factors_long;
  rope_ = Rope(rope);
  if (c.position == PositionKind::Rope) rope_cs_.resize(B * c.rope.n_rot);
  if (any_mla) {
    const MlaConfig& m = c.mla;
    const KvShape stored = cache_->shape();  // the caller's cache may store other rows than params_.kv
    mla_row_ = stored.head_dim_k;
    mla_dv_ = stored.head_dim_v;
    mla_cs_.resize(B * m.rope_width());
    RopeParams mr;
    mr.pairing = RopePairing::Adjacent;
    mr.n_rot = m.qk_rope;
    mla_rope_ = Rope(mr);
    qa_.resize(B * m.q_lora_rank);
    kv_.resize(B * mla_row_);
    qlat_.resize(B * c.n_head * mla_row_);
    olat_.resize(B * c.n_head * mla_dv_);
    // The per-head projections take mla_block_ tokens per call, so that
    // head_x_ and head_y_ stay within 16 MiB each (or one token's H rows)
    // whatever the batch: 512 tokens of V3's 128 heads x 512 would be 128 MiB.
    const size_t widest = std::max({m.qk_nope, m.kv_lora_rank, m.v_head_dim});
    constexpr size_t kHeadScratchFloats = (size_t)4 << 20;
    mla_block_ = (int32_t)std::clamp<size_t>(kHeadScratchFloats / (c.n_head * widest), 1, B);
    head_x_.resize((size_t)mla_block_ * c.n_head * widest);
    head_y_.resize((size_t)mla_block_ * c.n_head * widest);
    mla_rows_.reserve(B);
    if (params_.mla_attn != MlaAttn::Absorbed) mla_naive_.prepare(model, params_.n_batch);
  }
  if (any_moe) {
    const MoeConfig& e = c.moe;
    router_.resize(F * e.n_expert);
    sel_.resize(F * e.n_expert_used);
    sel_w_.resize(F * e.n_expert_used);
    xe_.resize(F * c.d_model);
    ye_.resize(F * c.d_model);
    slot_out_.resize(F * e.n_expert_used * c.d_model);
  }
  pos_.resize(B);
  tok_.resize(B);
  for (const LayerConfig& lc : c.layers)
    if (lc.rope == LayerRope::Local) rope_local_cs_.resize(B * c.rope_local.n_rot);
}

void Context::eval(const TokenId* tokens, int32_t n, float* logits, bool all_logits, const ProgressFn& progress) {
  const int32_t n_vocab = model_.config().n_vocab;
  if (n <= 0) fail("nothing to evaluate");
  if (n > cache_->room())
    fail("context full: {} cached + {} new tokens exceed the context size of {} (raise -c or use --kv window:W)",
         cache_->n_past(), n, cache_->n_past() + cache_->room());
  if (progress) progress(0, n);
  for (int32_t i0 = 0, nb = 0; i0 < n; i0 += nb) {
    nb = std::min(params_.n_batch, n - i0);
    const bool last = i0 + nb == n;
    BatchRun run{cache_->plan(nb), tokens + i0, all_logits ? logits + (size_t)i0 * n_vocab : (last ? logits : nullptr),
                 all_logits};
    forward({run});
    if (progress) progress(i0 + nb, n);
  }
  cache_->end_input();
}

void Context::decode(const std::vector<BatchRun>& runs) {
  if (runs.empty()) fail("nothing to decode");
  for (size_t i = 0; i < runs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (runs[i].plan.seq == runs[j].plan.seq) fail("sequence {} has two runs in one batch", runs[i].plan.seq);
  forward(runs);
}

void Context::forward(const std::vector<BatchRun>& runs) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int d = c.d_model;

  // Checks before anything is touched, then the cells of every run.
  int32_t n = 0;
  for (const BatchRun& r : runs) {
    if (r.plan.n_tokens <= 0) fail("nothing to evaluate");
    if (c.position == PositionKind::Learned && (int64_t)r.plan.pos0 + r.plan.n_tokens > c.n_ctx_train)
      fail("positions beyond the {} learned positions of this model", c.n_ctx_train);
    for (int32_t i = 0; i < r.plan.n_tokens; ++i)
      if (r.tokens[i] < 0 || r.tokens[i] >= c.n_vocab) fail("token id {} out of range [0, {})", r.tokens[i], c.n_vocab);
    n += r.plan.n_tokens;
  }
  if (n > params_.n_batch) fail("a batch of {} tokens exceeds the batch size {}", n, params_.n_batch);
  for (const BatchRun& r : runs) cache_->prepare(r.plan);
  for (int32_t t = 0; const BatchRun& r : runs)
    for (int32_t i = 0; i < r.plan.n_tokens; ++i, ++t) {
      tok_[t] = r.tokens[i];
      pos_[t] = r.plan.pos0 + i;
    }

  {  // Token (and learned position) embeddings.
    OpScope timed(timer_, Op::Embed);
    for (int32_t t = 0; t < n; ++t) {
      get_row(w.tok_embd, tok_[t], &x_[(size_t)t * d]);
      if (c.embd_scale != 0)
        for (int i = 0; i < d; ++i) x_[(size_t)t * d + i] *= c.embd_scale;
      if (c.position == PositionKind::Learned) {
        get_row(w.pos_embd, pos_[t], tmp_.data());
        add_inplace(&x_[(size_t)t * d], tmp_.data(), d);
      }
    }
    // RoPE angles of each token, computed once for all layers.
    if (c.position == PositionKind::Rope)
      for (int32_t t = 0; t < n; ++t) rope_.angles(pos_[t], &rope_cs_[(size_t)t * c.rope.n_rot]);
    if (!rope_local_cs_.empty())
      for (int32_t t = 0; t < n; ++t) rope_local_.angles(pos_[t], &rope_local_cs_[(size_t)t * c.rope_local.n_rot]);
  }

  // Each layer: x += attn(xn) with xn = attn_norm(x), then x += ffn(xn)
  // with xn = ffn_norm(x); every norm after the first runs in the seam pass
  // of the block before it (residual_norm).
  normalize(pool_, timer_, c, w.layers[0].attn_norm, w.layers[0].attn_norm_b, x_.data(), xn_.data(), n);
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = w.layers[l];

    // Attention block: x += Wo · attn(xn).
    attn_xq_ready_ = false;
    if (c.layers[l].attn == AttnBlock::MLA) {
      OpScope timed(timer_, Op::Attention);
      attention_mla(l, runs, n);
    } else {
      attention_gqa(l, runs, n);
    }
    {
      OpScope timed(timer_, Op::OMatmul);
      const WeightMatrix* Ws[1] = {&L.wo};
      float* ys[1] = {tmp_.data()};
      const Epilogue ep = epilogue(L.bo);
      if (attn_xq_ready_) matmul_prepared(Ws, ys, 1, attn_xq_.data(), n, pool_, scratch_, &ep);
      else matmul(L.wo, attn_.data(), n, tmp_.data(), pool_, scratch_, ep);
    }
    residual_norm(pool_, timer_, c, L.attn_post_norm, tmp_.data(), x_.data(), &L.ffn_norm, &L.ffn_norm_b, xn_.data(), n);

    // Feed-forward block: x += ffn(xn), kFfnSlice tokens at a time: the
    // [tokens][d_ff] buffers are the largest activations, and the
    // batch-invariant kernels give the same result for any slicing.
    for (int32_t s0 = 0, ns = 0; s0 < n; s0 += ns) {
      ns = std::min(kFfnSlice, n - s0);
      const float* xs = &xn_[(size_t)s0 * d];
      float* out = &tmp_[(size_t)s0 * d];
      if (c.layers[l].ffn == FfnBlock::MoE) {
        OpScope timed(timer_, Op::Moe);
        ffn_moe(L, xs, ns, out);
      } else {
        ffn_dense(L, xs, ns, out);
      }
    }
    const LayerWeights* next = l + 1 < c.n_layer ? &w.layers[l + 1] : nullptr;  // its attention norm
    residual_norm(pool_, timer_, c, L.ffn_post_norm, tmp_.data(), x_.data(), next ? &next->attn_norm : nullptr,
                  next ? &next->attn_norm_b : nullptr, xn_.data(), n);
  }
  for (const BatchRun& r : runs) cache_->commit(r.plan, r.tokens);
  output_logits(runs);
}

// Only the rows whose logits are wanted go through the output head, in one
// matmul for all runs.
void Context::output_logits(const std::vector<BatchRun>& runs) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const int d = c.d_model;
  logit_rows_.clear();
  for (int32_t row0 = 0; const BatchRun& r : runs) {
    if (r.logits) {
      for (int32_t i = r.all_logits ? 0 : r.plan.n_tokens - 1; i < r.plan.n_tokens; ++i) logit_rows_.push_back(row0 + i);
    }
    row0 += r.plan.n_tokens;
  }
  const int32_t rows = (int32_t)logit_rows_.size();
  if (rows == 0) return;
  for (int32_t i = 0; i < rows; ++i)  // gathered to the front of tmp_ ([rows][d_model])
    std::copy_n(&x_[(size_t)logit_rows_[i] * d], d, &tmp_[(size_t)i * d]);
  normalize(pool_, timer_, c, w.out_norm, w.out_norm_b, tmp_.data(), xn_.data(), rows);
  // Straight into the caller's buffers when one run wants logits, or when
  // the runs' buffers follow each other in memory as the rows do (one
  // [rows][n_vocab] array, as `bench --parallel` passes them):
  // no copy of rows x n_vocab floats per step.
  float* out = nullptr;
  bool contiguous = true;
  for (const float* next = nullptr; const BatchRun& r : runs) {
    if (!r.logits) continue;
    if (next && r.logits != next) contiguous = false;
    if (!next) out = r.logits;
    next = r.logits + (size_t)(r.all_logits ? r.plan.n_tokens : 1) * c.n_vocab;
  }
  if (!contiguous) {
    logits_.resize((size_t)rows * c.n_vocab);
    out = logits_.data();
  }
  {
    OpScope timed(timer_, Op::OutputMatmul);
    matmul(w.output, xn_.data(), rows, out, pool_, scratch_);
  }
  softcap_inplace(out, (size_t)rows * c.n_vocab, c.logit_softcap);
  if (contiguous) return;
  const float* src = logits_.data();
  for (const BatchRun& r : runs) {
    if (!r.logits) continue;
    const size_t count = (size_t)(r.all_logits ? r.plan.n_tokens : 1) * c.n_vocab;
    std::copy_n(src, count, r.logits);
    src += count;
  }
}

void Context::attention_gqa(int l, const std::vector<BatchRun>& runs, int32_t n) {
  const ModelConfig& c = model_.config();
  const LayerWeights& L = model_.weights().layers[l];
  const int qd = c.q_dim(), kd = c.k_dim(), vd = c.v_dim();
  {  // Q, K and V in one pool hand-off
    const WeightMatrix* Ws[3] = {&L.wq, &L.wk, &L.wv};
    float* ys[3] = {q_.data(), k_.data(), v_.data()};
    const Epilogue eps[3] = {epilogue(L.bq), epilogue(L.bk), epilogue(L.bv)};
    OpScope timed(timer_, Op::QkvMatmul);
    matmul_many(Ws, ys, 3, xn_.data(), n, pool_, scratch_, eps);
  }
  norm_heads(pool_, timer_, c, L.q_norm, q_.data(), n, c.n_head);
  norm_heads(pool_, timer_, c, L.k_norm, k_.data(), n, c.n_kv_head);
  const bool roped = c.position == PositionKind::Rope && c.layers[l].rope != LayerRope::None;
  const bool local = c.layers[l].rope == LayerRope::Local;
  const Rope& r = local ? rope_local_ : rope_;
  const float* cs = local ? rope_local_cs_.data() : rope_cs_.data();
  const int nr = local ? c.rope_local.n_rot : c.rope.n_rot;
  const AttnArgs args{q_.data(), (size_t)qd, attn_.data(), (size_t)c.attn_dim(), c.n_kv_head,
                      c.n_head / c.n_kv_head, c.head_dim_k, c.head_dim_v, c.attn_scale};
  if (attend_decode_pairs(l, runs, q_.data(), k_.data(), kd, v_.data(), vd, args, roped ? &r : nullptr, cs, nr, L.wo))
    return;
  if (roped) {
    OpScope timed(timer_, Op::Rope);
    over_tokens(pool_, n, [&](int32_t t0, int32_t t1) {
      for (int32_t t = t0; t < t1; ++t) {
        r.apply(&q_[(size_t)t * qd], c.n_head, c.head_dim_k, cs + (size_t)t * nr);
        r.apply(&k_[(size_t)t * kd], c.n_kv_head, c.head_dim_k, cs + (size_t)t * nr);
      }
    });
  }
  if (observer_) observer_(l, xn_.data(), q_.data(), k_.data(), n);
  OpScope timed(timer_, Op::Attention);
  write_and_attend(l, runs, k_.data(), kd, v_.data(), vd, args);
}

void Context::ffn_dense(const LayerWeights& L, const float* xs, int32_t ns, float* out) {
  const ModelConfig& c = model_.config();
  if (c.ffn != FfnKind::GELU)
    return gated_ffn(L.w_gate, L.w_up, L.w_down, L.b_up, L.b_down, c.ffn == FfnKind::GeGLU, xs, ns, out);
  {
    OpScope timed(timer_, Op::GateUpMatmul);
    matmul(L.w_up, xs, ns, up_.data(), pool_, scratch_, epilogue(L.b_up, Activation::GELU));
  }
  OpScope timed(timer_, Op::DownMatmul);
  matmul(L.w_down, up_.data(), ns, out, pool_, scratch_, epilogue(L.b_down));
}

void Context::gated_ffn(const WeightMatrix& gate, const WeightMatrix& up, const WeightMatrix& down, const Vec& b_up,
                        const Vec& b_down, bool geglu, const float* xs, int32_t ns, float* out) {
  const WeightMatrix* Ws[2] = {&gate, &up};  // gate and up in one pool hand-off
  float* ys[2] = {gate_.data(), up_.data()};
  const Epilogue eps[2] = {{nullptr, geglu ? Activation::GELU : Activation::None}, epilogue(b_up)};
  // The GLU product and its conversion for the down projection run in the
  // gate/up tasks, on each task's rows while they are in cache: no passes
  // (and, in a batched decode step, no single-threaded work) of their own.
  const ActForm form(down);
  const size_t f = gate.rows, rb = form.row_bytes();
  if (ffn_xq_.size() < (size_t)ns * rb) ffn_xq_.resize((size_t)ns * rb);
  {
    OpScope timed(timer_, Op::GateUpMatmul);
    matmul_rows_then(Ws, ys, 2, xs, ns, pool_, scratch_, eps, form.block(),
                     [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
                       for (int64_t t = t0; t < t1; ++t) {
                         float* g = gate_.data() + t * f;
                         const float* u = up_.data() + t * f;
                         if (geglu) mul_inplace(g + r0, u + r0, r1 - r0);
                         else swiglu_inplace(g + r0, u + r0, r1 - r0);
                         if (rb) form.convert(g, r0, r1, ffn_xq_.data() + t * rb);
                       }
                     });
  }
  OpScope timed(timer_, Op::DownMatmul);
  const WeightMatrix* Wd[1] = {&down};
  float* yd[1] = {out};
  const Epilogue ed = epilogue(b_down);
  matmul_prepared(Wd, yd, 1, rb ? ffn_xq_.data() : (const uint8_t*)gate_.data(), ns, pool_, scratch_, &ed);
}

// K/V writes and attention of one layer. Heads that take every run's tokens
// in one wave (full history, or a ring with room for them) are written at
// once and attended together; waves run the next wave of every run at once.
// A streaming head whose ring fills up takes one token per wave (a later
// token would evict a row an earlier query still sees), so in a per-head
// mixed cache each such (run, head) runs its tokens in order, wave by wave,
// as one task of its own: a small ring never forces the full-history heads
// into one-token waves. Every query's result depends only on its view, so
// the split changes no bit.
void Context::write_and_attend(int layer, const std::vector<BatchRun>& runs, const float* k, size_t k_row,
                               const float* v, size_t v_row, const AttnArgs& a) {
  const int nh = a.n_kv_head;
  auto k_at = [&](int32_t row) { return k + (size_t)row * k_row; };
  auto v_at = [&](int32_t row) { return v ? v + (size_t)row * v_row : nullptr; };  // null: latent rows
  whole_heads_.assign(nh, 1);
  seq_heads_.clear();
  for (int h = 0; h < nh; ++h) {
    for (const BatchRun& r : runs)
      if (cache_->max_wave(layer, h, r.plan.pos0) < r.plan.n_tokens) whole_heads_[h] = 0;
    if (!whole_heads_[h]) seq_heads_.push_back(h);
  }
  // Uniform caches (or every head with room): waves of all heads together.
  if (seq_heads_.empty() || (int)seq_heads_.size() == nh) {
    if (seq_heads_.empty() || runs.size() > 1 || a.naive) {  // naive latent attention decompresses per wave
      wave_done_.assign(runs.size(), 0);
      for (bool more = true; more;) {
        more = false;
        waves_.clear();
        for (int32_t row0 = 0, r = 0; r < (int32_t)runs.size(); row0 += runs[r++].plan.n_tokens) {
          const KvPlan& p = runs[r].plan;
          int32_t& done = wave_done_[r];
          if (done == p.n_tokens) continue;
          // This layer's heads only: a window layer's ring must not force
          // the full-history layers of the same model into one-token waves.
          int32_t nw = p.n_tokens - done;
          for (int h = 0; h < nh; ++h) nw = std::min(nw, cache_->max_wave(layer, h, p.pos0 + done));
          waves_.push_back({{p.seq, p.pos0 + done, nw}, row0 + done});
          OpScope timed(timer_, Op::KvWrite);
          cache_->write(layer, waves_.back().plan, k_at(row0 + done), v_at(row0 + done));
          done += nw;
          more |= done < p.n_tokens;
        }
        attention(layer, waves_, a, nullptr);
        observe(layer, waves_, a, nullptr);
      }
      return;
    }
  }
  waves_.clear();
  for (int32_t row0 = 0; const BatchRun& r : runs) {
    waves_.push_back({r.plan, row0});
    row0 += r.plan.n_tokens;
  }
  if ((int)seq_heads_.size() < nh) {
    for (const Wave& w : waves_)
      for (int h = 0; h < nh; ++h)
        if (whole_heads_[h])
          cache_->write_head(layer, h, w.plan, k_at(w.row0), v_at(w.row0));
    attention(layer, waves_, a, whole_heads_.data());
    observe(layer, waves_, a, whole_heads_.data());
  }
  const int64_t n_seq = (int64_t)seq_heads_.size();
  pool_.parallel_for((int64_t)waves_.size() * n_seq, [&](int64_t i, int) {
    const Wave& w = waves_[i / n_seq];
    const int h = seq_heads_[i % n_seq];
    const KvPlan& p = w.plan;
    for (int32_t i0 = 0, nw = 0; i0 < p.n_tokens; i0 += nw) {
      nw = std::min(p.n_tokens - i0, cache_->max_wave(layer, h, p.pos0 + i0));
      const int32_t r0 = w.row0 + i0;
      cache_->write_head(layer, h, {p.seq, p.pos0 + i0, nw}, k_at(r0), v_at(r0));
      for (int32_t t = r0; t < r0 + nw; ++t) {
        const float* q = a.q + (size_t)t * a.q_row + (size_t)h * a.group * a.dk;
        attend_head(layer, h, p.pos0 + (t - w.row0), p.seq, a, q, a.out + (size_t)t * a.out_row + (size_t)h * a.group * a.dv);
        if (cache_->observes())
          cache_->observe(layer, h, p.pos0 + (t - w.row0), q, a.group, a.scale, model_.config().attn_softcap);
      }
    }
  });
}

// Token eviction learns from attention (KvCache::observes): every query of
// the waves, per head in position order (one task per head, so a head's
// scores add up in the same order whatever the batch).
void Context::observe(int layer, const std::vector<Wave>& waves, const AttnArgs& a, const uint8_t* heads) {
  if (!cache_->observes()) return;
  pool_.parallel_for(a.n_kv_head, [&](int64_t h, int) {
    if (heads && !heads[h]) return;
    for (const Wave& w : waves)
      for (int32_t t = 0; t < w.plan.n_tokens; ++t)
        cache_->observe(layer, (int)h, w.plan.pos0 + t, a.q + (size_t)(w.row0 + t) * a.q_row + (size_t)h * a.group * a.dk,
                        a.group, a.scale, model_.config().attn_softcap);
  });
}

namespace {

// out = alpha * full + (1 - alpha) * stream, element-wise (one formula for
// every path, so a gated head's bits do not depend on the batch).
void blend_gate(float alpha, float* full, const float* stream, size_t n) {
  for (size_t i = 0; i < n; ++i) full[i] = alpha * full[i] + (1.0f - alpha) * stream[i];
}

}  // namespace

// attend() over one view, with the model's score soft-cap if it has one
// (the chunks and merge of the split path, so the same bits).
void Context::attend_view(const AttnArgs& a, const float* q, const KvView& view, float* out) {
  const float cap = model_.config().attn_softcap;
  if (cap == 0) return attend(q, a.group, view, a.scale, out);
  thread_local std::vector<AttnChunk> chunks;
  thread_local std::vector<float> parts;  // [chunks][attn_partial_floats]
  attn_chunks(view, chunks);
  const size_t pf = attn_partial_floats(a.group, a.dv);
  parts.resize(pf * chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i)
    attend_chunk_softcap(q, a.group, view, chunks[i], a.scale, cap, &parts[pf * i]);
  attend_merge(parts.data(), (int)chunks.size(), a.group, view, out);
}

void Context::attend_head(int layer, int kv_head, int32_t pos, int32_t seq, const AttnArgs& a, const float* q,
                          float* out) {
  const float alpha = cache_->gate(layer, kv_head);
  if (alpha == 1.0f) return attend_view(a, q, cache_->view(layer, kv_head, pos, seq), out);
  if (alpha == 0.0f) return attend_view(a, q, cache_->stream_view(layer, kv_head, pos), out);
  const size_t n = (size_t)a.group * a.dv;
  thread_local std::vector<float> stream;  // [group][dv]
  stream.resize(n);
  attend_view(a, q, cache_->stream_view(layer, kv_head, pos), stream.data());
  attend_view(a, q, cache_->view(layer, kv_head, pos, seq), out);
  blend_gate(alpha, out, stream.data(), n);
}

// Every (token, KV head) pair is independent: the query heads of the group
// read the head's cached rows once (see ops/attention.h). For a wave with
// many tokens (prefill) a task is a run of up to kAttnMaxTokens of its
// tokens for one head; for waves with few (decode) a task is one chunk of a
// pair's rows, so that a long cache keeps every thread busy, and the
// partial results are merged afterwards. Both run the same chunk kernel and
// the same merge, so a query's result depends neither on the batch nor on
// the other sequences in it.
void Context::attention(int layer, const std::vector<Wave>& waves, const AttnArgs& a, const uint8_t* heads) {
  if (a.naive) return attention_mla_naive(layer, waves, a);
  const ModelConfig& c = model_.config();
  const int group = a.group, dv = a.dv, n_kv_head = a.n_kv_head;
  // Where a task's query heads start, and their outputs.
  auto q_of = [&](const AttnPair& p, int32_t t = 0) {
    return a.q + (size_t)(p.row + t) * a.q_row + (size_t)p.head * group * a.dk;
  };
  auto out_of = [&](const AttnPair& p, int32_t t = 0) {
    return a.out + (size_t)(p.row + t) * a.out_row + (size_t)p.head * group * dv;
  };
  auto view_of = [&](const AttnPair& p, int32_t t = 0) {
    if (a.rows) return a.rows->map(cache_->view(layer, 0, p.pos + t, p.seq), p.head);  // naive MLA: head = unit
    return cache_->view(layer, p.head, p.pos + t, p.seq);
  };
  auto gate_of = [&](const AttnPair& p) { return a.rows ? 1.0f : cache_->gate(layer, p.head); };
  // Soft-capped scores have one (scalar) chunk kernel, used by the split path.
  const float cap = c.attn_softcap;
  auto prefill_wave = [&](const KvPlan& p) {
    return cap == 0 && (int64_t)p.n_tokens * n_kv_head >= 4 * (int64_t)pool_.size();
  };
  std::vector<AttnPair>& tasks = attn_pairs_;  // prefill tasks first, then the decode pairs
  tasks.clear();
  // Tokens per task: as many as the joint kernel takes (kAttnMaxHeads query
  // heads), a power of two so that runs stay inside one tile.
  int32_t kb = kAttnMaxTokens;
  while (kb > 1 && kb * group > kAttnMaxHeads) kb /= 2;
  for (const Wave& w : waves) {
    const KvPlan& p = w.plan;
    if (!prefill_wave(p)) continue;
    // Runs cut at positions that are multiples of kb, so that their views
    // share all rows but the last tile's.
    for (int32_t t0 = 0, t1 = 0; t0 < p.n_tokens; t0 = t1) {
      t1 = std::min(p.n_tokens, (p.pos0 + t0) / kb * kb + kb - p.pos0);
      for (int h = 0; h < n_kv_head; ++h)
        if (!heads || heads[h]) tasks.push_back({w.row0 + t0, p.pos0 + t0, p.seq, h, t1 - t0});
    }
  }
  const int64_t n_prefill = (int64_t)tasks.size();
  for (const Wave& w : waves) {
    const KvPlan& p = w.plan;
    if (prefill_wave(p)) continue;
    for (int32_t t = 0; t < p.n_tokens; ++t)
      for (int h = 0; h < n_kv_head; ++h)
        if (!heads || heads[h]) tasks.push_back({w.row0 + t, p.pos0 + t, p.seq, h, 1});
  }
  if (n_prefill > 0)
    pool_.parallel_for(n_prefill, [&](int64_t i, int) {
      const AttnPair& p = tasks[i];
      if (gate_of(p) != 1.0f) {  // soft gate: full and streaming views, blended
        for (int32_t t = 0; t < p.n_tok; ++t) attend_head(layer, p.head, p.pos + t, p.seq, a, q_of(p, t), out_of(p, t));
        return;
      }
      const float* qs[kAttnMaxTokens];
      float* outs[kAttnMaxTokens];
      KvView views[kAttnMaxTokens];
      for (int32_t t = 0; t < p.n_tok; ++t) {
        qs[t] = q_of(p, t);
        outs[t] = out_of(p, t);
        views[t] = view_of(p, t);
      }
      attend_tokens(qs, views, p.n_tok, group, a.scale, outs);
    });
  if (n_prefill == (int64_t)tasks.size()) return;
  // Split path: list every (pair, chunk), compute the partials, merge per pair.
  std::vector<AttnItem>& items = attn_items_;
  std::vector<AttnChunk>& chunks = attn_chunks_;
  std::vector<int64_t>& first = attn_first_;  // [pairs + 1] item ranges
  items.clear();
  first.assign(1, 0);
  for (int64_t p = n_prefill; p < (int64_t)tasks.size(); ++p) {
    if (gate_of(tasks[p]) != 0.0f) {  // gate 0: the streaming view only
      attn_chunks(view_of(tasks[p]), chunks);
      for (const AttnChunk& ch : chunks) items.push_back({p, ch});
    }
    first.push_back((int64_t)items.size());
  }
  const size_t pf = attn_partial_floats(group, dv);
  if (attn_parts_.size() < pf * items.size()) attn_parts_.resize(pf * items.size());
  pool_.parallel_for((int64_t)items.size(), [&](int64_t i, int) {
    const AttnItem& it = items[i];
    const AttnPair& p = tasks[it.pair];
    if (cap > 0) attend_chunk_softcap(q_of(p), group, view_of(p), it.chunk, a.scale, cap, &attn_parts_[pf * i]);
    else attend_chunk(q_of(p), group, view_of(p), it.chunk, a.scale, &attn_parts_[pf * i]);
  });
  for (int64_t j = 0; j + 1 < (int64_t)first.size(); ++j) {
    const AttnPair& p = tasks[n_prefill + j];
    const float alpha = gate_of(p);
    if (alpha != 0.0f)
      attend_merge(&attn_parts_[pf * first[j]], (int)(first[j + 1] - first[j]), group, view_of(p), out_of(p));
    if (alpha == 1.0f) continue;
    // Soft gate: the streaming view (a few rows) here, then the same blend
    // as attend_head.
    if (alpha == 0.0f) {
      attend_view(a, q_of(p), cache_->stream_view(layer, p.head, p.pos), out_of(p));
      continue;
    }
    attn_stream_.resize((size_t)group * dv);
    attend_view(a, q_of(p), cache_->stream_view(layer, p.head, p.pos), attn_stream_.data());
    blend_gate(alpha, out_of(p), attn_stream_.data(), attn_stream_.size());
  }
}

}  // namespace kvforge
