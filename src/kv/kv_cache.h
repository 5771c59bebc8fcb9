#pragma once
// The KV cache interface. Every policy (full, window + sinks, quantized,
// latent/MLA, per-head mixed) implements it, so the forward pass never knows
// which one it talks to.
//
// Two ideas from serving engines shape it:
//  - cell metadata (which position lives in which cell) is kept apart from
//    tensor storage, and
//  - "plan" (metadata only: where do the next n tokens go, do they fit?) is
//    apart from "write" (store one layer's K/V rows) and "commit" (advance
//    the position counter once the whole forward pass succeeded).
// Policies are resolved per (layer, KV head) (see kv_layout.h): view() is
// asked per head, so a mixed cache answers with a full history for one head
// and a window for its neighbour, each in its own storage precision.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/kv_view.h"  // KvStorage, KvView: what the attention kernels read

namespace kvforge {

// What one token contributes per layer.
struct KvShape {
  int n_layer = 0;
  int n_kv_head = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  // Latent rows (MLA): V is the first head_dim_v values of the K row, which
  // is stored once ([c_KV | k_pe]); write() then ignores its v argument.
  bool v_in_k = false;
};

// New tokens of one sequence: token i gets position pos0 + i. Which cell
// each token lands in is the cache's business (it may differ per head). A
// batch of several sequences is one plan per sequence (a multi-sequence
// cache: kv/paged_cache.h); single-sequence caches only know seq 0.
struct KvPlan {
  int32_t seq = 0;
  int32_t pos0 = 0;
  int32_t n_tokens = 0;
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  virtual std::string describe() const = 0;  // e.g. "window:1024,sinks:4+q8, 1028 cells"
  // The rows as stored: latent rows in quantized storage are padded to whole
  // blocks (stored_kv_shape in kv_layout.h), and the forward pass writes and
  // reads them at that width.
  virtual KvShape shape() const = 0;
  virtual int32_t capacity() const = 0;      // cells of the largest (layer, head)
  virtual int32_t n_past() const = 0;        // position the next token gets
  // How many more tokens the cache accepts: capacity - n_past for a full
  // cache, practically unbounded (position range) for a window cache.
  virtual int64_t room() const = 0;
  // Most tokens, starting at position pos0 of a planned batch, whose K/V in
  // head (layer, kv_head) may be written before any of their queries attend
  // (>= 1): a "wave". A window cache whose ring is full must not overwrite a
  // cell that an earlier query of the same wave still sees, so the forward
  // pass runs a batch's matmuls on all its tokens and its write + attention
  // in waves (one token per wave for a full ring), per layer.
  virtual int32_t max_wave(int layer, int kv_head, int32_t pos0) const = 0;

  virtual size_t bytes() const = 0;            // storage allocated, all layers and heads
  virtual size_t bytes_per_token() const = 0;  // what one cached token costs in all heads that hold it
  virtual size_t bytes_used() const = 0;       // bytes of the cells that hold tokens now

  // Forget everything (new text); storage stays allocated.
  virtual void reset() = 0;
  // Where n new tokens go. Throws kvforge::Error if they do not fit.
  virtual KvPlan plan(int32_t n_tokens) const = 0;
  // Stores one layer's K/V of the planned tokens, or of a wave of them:
  // any {seq, pos0 + i, n} inside the plan with n <= max_wave(layer, h,
  // pos0 + i) for every head h of the layer.
  // k: [n_tokens][n_kv_head][head_dim_k] f32, v: [n_tokens][n_kv_head][head_dim_v] f32
  // (v unused, may be null, for latent rows: KvShape::v_in_k).
  virtual void write(int layer, const KvPlan& plan, const float* k, const float* v) = 0;
  // Makes the cells of a plan writable: a paged cache allocates its blocks
  // (copying a shared one first: copy-on-write). Throws kvforge::Error when
  // its pool is exhausted. Nothing to do for caches that own their cells.
  virtual void prepare(const KvPlan& plan) {}
  // The planned tokens (ids [plan.n_tokens], which a prefix-sharing cache
  // records; may be null for the others) are now part of the cache.
  virtual void commit(const KvPlan& plan, const int32_t* tokens = nullptr) = 0;
  // Rows a query of sequence seq at position q_pos may attend to (causal),
  // in position order. Valid after write() of that layer, before or after
  // commit(), until the sequence's cells change.
  virtual KvView view(int layer, int kv_head, int32_t q_pos, int32_t seq = 0) const = 0;

  // Waves per head (per-head mixed caches): a full-history head takes a whole
  // batch in one wave while a streaming neighbour with a full ring takes one
  // token, so the forward pass writes and attends each head in its own waves
  // (write_head: one head's rows of {pos0 + i, n}, n <= max_wave(layer,
  // kv_head, pos0 + i), laid out as in write()).
  virtual void write_head(int layer, int kv_head, const KvPlan& plan, const float* k, const float* v);

  // Token eviction (kv/evict_cache.h) learns from attention: when observes(),
  // the forward pass hands over every query (q: [n_group][head_dim_k], after
  // RoPE; scores are scale * q.k, soft-capped by cap > 0) once it attended,
  // head by head in position order, before the next wave is written.
  // end_input() follows each Context::eval() call (a prompt, a generated
  // token): where SnapKV selects what to keep.
  virtual bool observes() const { return false; }
  virtual void observe(int layer, int kv_head, int32_t q_pos, const float* q, int n_group, float scale, float cap) {}
  virtual void end_input() {}

  // Soft gates (SPEC.md §4): head (layer, kv_head) outputs
  //   gate * Attn(view) + (1 - gate) * Attn(stream_view),
  // the streaming view being the first `sinks` and the last `recent` rows of
  // the same full-history storage (no copy). gate 1 (the default) is the
  // plain head, bit for bit; gate 0 attends only to the streaming view.
  virtual float gate(int layer, int kv_head) const { return 1.0f; }
  virtual KvView stream_view(int layer, int kv_head, int32_t q_pos) const;  // sequence 0
  // Sets every head's gate (alpha: [n_layer][n_kv_head], each in [0, 1]) and
  // the streaming view; every head must keep the full history. Throws
  // kvforge::Error otherwise.
  virtual void set_gates(const std::vector<float>& alpha, int32_t sinks, int32_t recent);
};

}  // namespace kvforge
