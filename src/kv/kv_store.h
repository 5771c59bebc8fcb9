#pragma once
// Tensor storage for K/V cells, shared by the cache policies (metadata about
// which position sits in which cell is the policy's business, not this).
//
//   k: [n_layer][n_kv_head][n_cells][head_dim_k]   of the storage type
//   v: [n_layer][n_kv_head][n_cells][head_dim_v]
//
// Head-major so that attention streams one head's rows contiguously.
// Allocated once, zero-filled lazily by the OS (pages are touched as cells fill).
#include <cstdint>
#include <memory>

#include "kv/kv_cache.h"

namespace kvforge {

class KvStore {
 public:
  KvStore(const KvShape& shape, int32_t n_cells, KvStorage storage);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  const KvShape& shape() const { return shape_; }
  KvStorage storage() const { return storage_; }
  int32_t n_cells() const { return n_cells_; }
  size_t bytes() const { return k_bytes_ + v_bytes_; }
  size_t bytes_per_cell() const;

  // Converts token `i` of a batch (k: [n][n_kv_head][head_dim_k] f32) into cell `cell` of `layer`.
  void write_token(int layer, int32_t cell, int32_t i, const float* k, const float* v);
  // A run of n_rows cells starting at first_cell for (layer, head).
  KvSegment segment(int layer, int kv_head, int32_t first_cell, int32_t n_rows) const;
  // A view with the storage fields filled and no segments.
  KvView base_view() const;

 private:
  size_t k_offset(int layer, int head, int32_t cell) const;
  size_t v_offset(int layer, int head, int32_t cell) const;

  KvShape shape_;
  int32_t n_cells_;
  KvStorage storage_;
  size_t elem_;
  uint8_t* k_ = nullptr;
  uint8_t* v_ = nullptr;
  size_t k_bytes_ = 0, v_bytes_ = 0;
};

}  // namespace kvforge
