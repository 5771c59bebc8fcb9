#include "kv/kv_layout.h"

#include "kv/kv_policy.h"
#include "ops/hadamard.h"
#include "util/error.h"

namespace kvforge {

bool KvLayout::uniform() const {
  for (const KvHeadSpec& h : heads)
    if (!(h == heads[0])) return false;
  return true;
}

KvLayout resolve_kv_layout(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx) {
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
  return L;
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
