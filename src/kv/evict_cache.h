#pragma once
// Token eviction caches (H2O, SnapKV; KvEviction in kv_layout.h): one lane
// of cells per (layer, KV head) that hold any position (cell_table.h), rows
// kept in position order, so views are one run that every attention kernel
// reads as it reads a full cache. Each head chooses its own tokens.
//
// H2O, defined so that no batch split changes it: a head's score of a
// token is the sum, over every query that saw it in position order, of the
// attention weight that query's heads (the KV head's query group, summed)
// gave it (ops/attention_weights.h), accumulated right after each query
// attended. The cache has `budget` cells; while there is room a wave takes
// as many tokens as fit, and once it is full the forward pass writes and
// attends one token at a time (max_wave 1): before a token is written the
// lowest-scoring token outside the last `recent` positions is dropped
// (evict_select.h). Each query thus sees the same cells whatever the batch,
// and scores add up in the same order: batched prefill equals
// token-by-token bit for bit. A budget at least as long as the text never
// drops anything: the full cache, bit for bit.
//
// SnapKV selects after an input (end_input(): the end of a prompt, or of a
// generated token) once the cache holds more than `budget` tokens: the last
// `window` queries' weights over the cells they saw are summed per cell,
// max-pooled, and the top budget - window earlier tokens are kept with the
// window's. It reads the whole input first, so it has cells for the context
// (bytes() says so) and holds at most `budget` tokens between inputs.
// Selection depends on where inputs end (a prompt fed token by token
// selects after every token), as SnapKV is defined.
#include <memory>

#include "kv/kv_layout.h"

namespace kvforge {

// Throws kvforge::Error for layouts it cannot keep (windowed or gated heads,
// e.g. a model with sliding-window layers).
std::unique_ptr<KvCache> make_evict_cache(const KvLayout& layout);

}  // namespace kvforge
