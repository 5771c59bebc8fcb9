#pragma once
// Decode-style attention over cached rows, one query token and one KV-head
// group at a time: scores, online softmax and the weighted sum of V in a
// single pass that reads each cached row once for all query heads of the
// group (GQA).
//
// Batch invariance: rows are processed in tiles of kAttnTile aligned to the
// start of the view, so the arithmetic for a query at position p is the same
// whether it runs in a 512-token prefill, alone in decode, or in a cache-off
// recomputation.
#include "kv/kv_cache.h"

namespace kvforge {

constexpr int kAttnTile = 32;

// q: [n_group][view.head_dim_k] f32, out: [n_group][view.head_dim_v] f32.
// softmax(scale * q.k) over all rows of the view.
void attend(const float* q, int n_group, const KvView& view, float scale, float* out);

}  // namespace kvforge
