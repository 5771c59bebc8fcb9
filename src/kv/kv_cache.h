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
// Policies are resolved per (layer, KV head): view() is asked per head, so a
// mixed cache can answer with a full history for one head and a window for
// its neighbour.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvforge {

// How cached K/V rows are stored. Every path (prefill, decode, cache off)
// stores through the same precision, so it is part of exactness.
enum class KvStorage { F32, F16 };
const char* kv_storage_name(KvStorage s);
KvStorage parse_kv_storage(const std::string& name);  // "f32" | "f16", throws kvforge::Error
size_t kv_storage_bytes(KvStorage s);                 // bytes per element

// What one token contributes per layer.
struct KvShape {
  int n_layer = 0;
  int n_kv_head = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
};

// Where a batch of new tokens goes: token i has position pos0 + i and is
// stored in cell cells[i].
struct KvPlan {
  int32_t pos0 = 0;
  int32_t n_tokens = 0;
  std::vector<int32_t> cells;
};

// Rows of one (layer, KV head) visible to a query, as up to two contiguous
// runs of cells (a ring buffer wraps once; sinks add a run). Row r of a run
// starts at k + r * head_dim_k elements of the storage type.
struct KvSegment {
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t n_rows = 0;
};
struct KvView {
  KvStorage storage = KvStorage::F16;
  int head_dim_k = 0;
  int head_dim_v = 0;
  int n_segments = 0;
  KvSegment segments[2];
  int32_t n_rows() const {
    int32_t n = 0;
    for (int i = 0; i < n_segments; ++i) n += segments[i].n_rows;
    return n;
  }
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  virtual std::string describe() const = 0;  // e.g. "full f16, 4096 cells"
  virtual int32_t capacity() const = 0;      // cells per (layer, head)
  virtual int32_t n_past() const = 0;        // position the next token gets
  virtual size_t bytes() const = 0;          // storage allocated, all layers
  virtual size_t bytes_per_token() const = 0;

  // Forget everything (new text); storage stays allocated.
  virtual void reset() = 0;
  // Where n new tokens go. Throws kvforge::Error if they do not fit.
  virtual KvPlan plan(int32_t n_tokens) const = 0;
  // Stores one layer's K/V of the planned tokens.
  // k: [n_tokens][n_kv_head][head_dim_k] f32, v: [n_tokens][n_kv_head][head_dim_v] f32.
  virtual void write(int layer, const KvPlan& plan, const float* k, const float* v) = 0;
  // The planned tokens are now part of the cache.
  virtual void commit(const KvPlan& plan) = 0;
  // Rows a query at position q_pos may attend to (causal), in position order.
  // Valid after write() of that layer, before or after commit().
  virtual KvView view(int layer, int kv_head, int32_t q_pos) const = 0;
};

// The `full` policy: one pre-allocated contiguous block per (layer, head),
// cell index == position.
std::unique_ptr<KvCache> make_full_cache(const KvShape& shape, int32_t n_ctx, KvStorage storage);

}  // namespace kvforge
