#pragma once
// The attention weights themselves (not their weighted sum of V): what token
// eviction scores rows by (H2O's accumulated attention, SnapKV's window
// votes). One scalar routine for every storage (rows read back as f32, q
// rotated like Hadamard-rotated rows), so a row's weight depends only on the
// query and the view, never on the batch or the SIMD level.
#include "ops/kv_view.h"

namespace kvforge {

// w: [view.n_rows()] += sum over the n_group query heads (q: [n_group][head_dim_k])
// of softmax_r(s_r), s_r = scale * q.k_r, soft-capped to cap * tanh(s_r / cap) when cap > 0.
void attn_weights_add(const float* q, int n_group, const KvView& view, float scale, float cap, float* w);

}  // namespace kvforge
