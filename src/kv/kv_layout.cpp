#include "kv/kv_layout.h"

#include <algorithm>

#include "kv/head_pattern.h"
#include "kv/kv_policy.h"
#include "ops/hadamard.h"
#include "util/error.h"

namespace kvforge {

bool KvLayout::uniform() const {
  for (const KvHeadSpec& h : heads)
    if (!(h == heads[0])) return false;
  return true;
}

namespace {

// The gate table of a heads:/gates: policy, checked against the model.
HeadGates policy_gates(const KvPolicy& policy, const KvShape& shape) {
  using K = KvHeadChoice::Kind;
  const KvHeadChoice& hc = policy.heads;
  if (hc.kind == K::Random) return random_head_gates(shape.n_layer, shape.n_kv_head, hc.seed);
  HeadGates g;
  if (hc.kind == K::List) {
    g.n_layer = shape.n_layer;
    g.n_kv_head = shape.n_kv_head;
    g.alpha.assign((size_t)shape.n_layer * shape.n_kv_head, 0.0);
    for (const auto& [l, h] : hc.full) {
      if (l >= shape.n_layer || h >= shape.n_kv_head)
        fail("--kv {}: head {}-{} does not exist (this model has layers 0-{} and KV heads 0-{})", policy.describe(),
             l, h, shape.n_layer - 1, shape.n_kv_head - 1);
      g.alpha[(size_t)l * shape.n_kv_head + h] = 1.0;
    }
    return g;
  }
  g = read_head_gates(hc.file);
  if (g.n_layer != shape.n_layer || g.n_kv_head != shape.n_kv_head)
    fail("head-pattern file {} has {} rows x {} columns, but this model has {} layers x {} KV heads", hc.file,
         g.n_layer, g.n_kv_head, shape.n_layer, shape.n_kv_head);
  return g;
}

// Heads chosen to stream get sinks + recent cells of their own; with gates
// every head keeps the full history and carries its alpha.
void apply_head_choice(const KvPolicy& policy, int32_t n_ctx, KvLayout& L) {
  using K = KvHeadChoice::Kind;
  const KvHeadChoice& hc = policy.heads;
  if (n_ctx <= 0) fail("context size must be positive, got {}", n_ctx);
  const HeadGates g = policy_gates(policy, L.shape);
  if (hc.kind == K::Gates) {
    for (size_t i = 0; i < L.heads.size(); ++i) {
      L.heads[i].gate = (float)g.alpha[i];
      L.heads[i].stream_sinks = hc.sinks;
      L.heads[i].stream_recent = hc.recent;
    }
    return;
  }
  const std::vector<uint8_t> full =
      hc.kind == K::List ? std::vector<uint8_t>(g.alpha.begin(), g.alpha.end()) : select_full_heads(g, hc.sparsity);
  for (size_t i = 0; i < L.heads.size(); ++i) {
    if (full[i]) continue;
    L.heads[i].window = hc.recent;
    L.heads[i].sinks = hc.sinks;
    L.heads[i].n_cells = hc.sinks + hc.recent;
  }
}

}  // namespace

KvShape stored_kv_shape(const KvShape& shape, KvStorage storage) {
  KvShape s = shape;
  if (s.v_in_k && kv_storage_quantized(storage)) {
    s.head_dim_k = (s.head_dim_k + QK - 1) / QK * QK;
    s.head_dim_v = (s.head_dim_v + QK - 1) / QK * QK;
  }
  return s;
}

KvLayout resolve_kv_layout(const KvPolicy& policy, const KvShape& model_shape, int32_t n_ctx) {
  const KvShape shape = stored_kv_shape(model_shape, policy.storage);
  if (shape.n_layer <= 0 || shape.n_kv_head <= 0 || shape.head_dim_k <= 0 || shape.head_dim_v <= 0 ||
      (shape.v_in_k && shape.head_dim_v > shape.head_dim_k))
    fail("invalid KV shape: {} layers, {} KV heads, head dims {}/{}", shape.n_layer, shape.n_kv_head,
         shape.head_dim_k, shape.head_dim_v);
  KvHeadSpec h;
  h.window = policy.window;
  h.sinks = policy.window > 0 ? policy.sinks : 0;
  h.storage = policy.storage;
  h.hadamard = policy.hadamard;
  if (h.window > 0) {
    // A window cache holds sinks + window cells whatever the context size.
    h.n_cells = h.sinks + h.window;
  } else {
    if (n_ctx <= 0) fail("context size must be positive, got {}", n_ctx);
    h.n_cells = n_ctx;
  }
  if (policy.evict.kind != KvEviction::Kind::None) {
    if (policy.evict.budget > n_ctx)
      fail("--kv {}: a budget of {} tokens exceeds the context size of {} (lower it or raise -c)", policy.describe(),
           policy.evict.budget, n_ctx);
    // H2O drops a token for every new one; SnapKV reads a whole input before
    // it selects, so it holds up to the context.
    if (policy.evict.kind == KvEviction::Kind::H2O) h.n_cells = policy.evict.budget;
  }
  if (kv_storage_quantized(h.storage) && (shape.head_dim_k % QK != 0 || shape.head_dim_v % QK != 0))
    fail("--kv {}: {} rows are stored in blocks of {}, but this model's head dims are {}/{}", policy.describe(),
         kv_storage_name(h.storage), QK, shape.head_dim_k, shape.head_dim_v);
  if (h.hadamard && !kv_storage_quantized(h.storage))
    fail("--kv {}: hadamard needs q8 or q4 storage", policy.describe());
  // Quantized dims are multiples of 32, so the transform blocks are >= 32.
  if (h.hadamard && (hadamard_block(shape.head_dim_k) < QK || hadamard_block(shape.head_dim_v) < QK))
    fail("--kv {}: head dims {}/{} have no power-of-two block of at least {} for the Hadamard transform",
         policy.describe(), shape.head_dim_k, shape.head_dim_v, QK);
  KvLayout L;
  L.shape = shape;
  L.heads.assign((size_t)shape.n_layer * shape.n_kv_head, h);
  L.evict = policy.evict;
  // All query heads read the one latent row of an MLA layer: there is no
  // per-head history to mix or gate.
  if (policy.heads.kind != KvHeadChoice::Kind::None && shape.v_in_k)
    fail("--kv {}: per-head mixed caches and soft gates do not apply to a latent (MLA) cache, whose row all heads "
         "share; use a uniform policy (f16, q8, window:W, ...)",
         policy.describe());
  if (policy.heads.kind != KvHeadChoice::Kind::None) apply_head_choice(policy, n_ctx, L);
  return L;
}

size_t kv_bytes_held(const KvLayout& layout, int32_t n_tokens) {
  size_t b = 0;
  for (const KvHeadSpec& h : layout.heads) {
    const int32_t keep = layout.evict.kind != KvEviction::Kind::None ? layout.evict.budget : h.n_cells;
    const size_t v_row = layout.shape.v_in_k ? 0 : kv_row_bytes(h.storage, layout.shape.head_dim_v);  // latent: V in K
    b += (size_t)std::min(n_tokens, keep) * (kv_row_bytes(h.storage, layout.shape.head_dim_k) + v_row);
  }
  return b;
}

void limit_layer_window(KvLayout& layout, int layer, int32_t window) {
  if (window <= 0) return;
  for (int h = 0; h < layout.shape.n_kv_head; ++h) {
    KvHeadSpec& s = layout.heads[(size_t)layer * layout.shape.n_kv_head + h];
    const bool smaller = s.window > 0 ? window < s.window : window < s.n_cells;
    if (!smaller) continue;
    s.window = window;
    s.sinks = 0;
    s.n_cells = window;
  }
}

}  // namespace kvforge
