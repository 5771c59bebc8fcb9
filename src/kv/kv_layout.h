#pragma once
// The resolved form of a cache policy: for every (layer, KV head), how many
// tokens it keeps (full history or sinks + window), how its rows are stored
// and how many cells it owns. make_kv_cache turns a layout into storage.
//
// Why per head: the policies of SPEC.md §2 that come next are per head by
// nature and slot in here without touching the cache or the forward pass:
//  - mixed (RLKV / DuoAttention): a layout whose heads differ, e.g. full for
//    retrieval heads and window:64,sinks:16 for the rest (a gate file picks
//    them); each head already gets its own cell count and storage, so the
//    memory is really saved.
//  - latent (MLA): one shared "head" per layer whose K row is [c_KV | k_rope]
//    and whose V is a view of c_KV; it will be a KvHeadSpec kind with its
//    own row dims, resolved here from the model shape.
// The uniform policies of today (full, window, q8/q4, hadamard) resolve to a
// layout whose heads are all equal.
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"

namespace kvforge {

struct KvPolicy;

struct KvHeadSpec {
  int32_t window = 0;  // 0 = full history, cell == position
  int32_t sinks = 0;   // first `sinks` positions kept forever (window only)
  KvStorage storage = KvStorage::F16;
  bool hadamard = false;  // rows rotated by the Walsh-Hadamard transform before storing
  int32_t n_cells = 0;    // full: n_ctx; window: sinks + window
  // Soft gate (full history only; SPEC.md §4): the head's output is
  // gate * Attn(all rows) + (1 - gate) * Attn(the first stream_sinks and the
  // last stream_recent rows of the same storage). gate 1: plain full history.
  float gate = 1.0f;
  int32_t stream_sinks = 0, stream_recent = 0;

  bool operator==(const KvHeadSpec&) const = default;
};

// Token eviction (kv/evict_cache.h): every head keeps at most `budget`
// tokens, its own choice by attention; cells hold any position (cell_table.h).
//  - H2O: the `recent` last tokens plus the heavy hitters (largest attention
//    accumulated over all queries so far); one token dropped per new token.
//  - SnapKV: after each input (prompt, generated token) the cache keeps the
//    last `window` tokens plus the prefix tokens that the last `window`
//    queries attend to most (scores max-pooled over `pool` neighbours).
struct KvEviction {
  enum class Kind : uint8_t { None, H2O, SnapKV };
  Kind kind = Kind::None;
  int32_t budget = 0;  // tokens kept per KV head
  int32_t recent = 0;  // H2O: most recent tokens never dropped (default budget / 2)
  int32_t window = 32;  // SnapKV: observation window (SnapKV's default)
  int32_t pool = 7;     // SnapKV: max-pool kernel size (odd; SnapKV's default)

  bool operator==(const KvEviction&) const = default;
};

struct KvLayout {
  KvShape shape;
  std::vector<KvHeadSpec> heads;  // [n_layer][n_kv_head]
  KvEviction evict;               // kind None: cells follow the heads' CellMaps

  const KvHeadSpec& head(int layer, int kv_head) const { return heads[(size_t)layer * shape.n_kv_head + kv_head]; }
  bool uniform() const;
};

// The row shape a storage keeps for the model's shape: the same, except that
// quantized latent rows (MLA, KvShape::v_in_k) of any width are padded with
// zeros to whole 32-element blocks (K and the V prefix each rounded up), so a
// converted model's 96 + 3 x 8 = 120 values are stored as 128; the padding is
// stored and counted in the bytes. Writers pass rows of this shape.
KvShape stored_kv_shape(const KvShape& shape, KvStorage storage);

// Checks that the policy fits the model (quantized rows need head_dim % 32 == 0,
// a gate file needs one row per layer and one column per KV head, ...) and
// spells it out per head; reads the gate file of a heads:/gates: policy.
// Throws kvforge::Error naming the problem.
KvLayout resolve_kv_layout(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx);

// A layer whose model attends only to the last `window` positions
// (sliding-window attention, e.g. Gemma 2/3's local layers): its heads keep
// at most that window, without sinks, so the layer really stores only
// `window` cells. Heads that keep less already (a smaller --kv window) stay
// as they are; so does a full head whose context fits in the window (same
// rows, nothing to save).
void limit_layer_window(KvLayout& layout, int layer, int32_t window);

// Bytes the cache holds after n_tokens tokens (every head full up to what
// it keeps: the context, sinks + window, or an eviction budget): what
// policies are compared at ("equal memory"). A SnapKV cache holds more
// while it reads an input, see evict_cache.h.
size_t kv_bytes_held(const KvLayout& layout, int32_t n_tokens);

// The single place where a layout becomes a cache.
std::unique_ptr<KvCache> make_kv_cache(const KvLayout& layout);

}  // namespace kvforge
