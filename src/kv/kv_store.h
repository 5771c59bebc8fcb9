#pragma once
// Tensor storage for K/V cells, shared by the cache policies (which position
// sits in which cell is cell_map.h's business, not this). Every (layer, KV
// head) owns its own block, sized and typed by its KvHeadSpec:
//
//   (layer, head) -> k: [n_cells][kv_row_bytes(storage, head_dim_k)] bytes
//                    v: [n_cells][kv_row_bytes(storage, head_dim_v)] bytes
//                       (none for latent rows, KvShape::v_in_k: V is a view of K)
//
// Head-major so that attention streams one head's rows contiguously; heads
// with fewer cells (window) or smaller rows (q8/q4) really take less memory.
// One anonymous mapping, zero-filled lazily by the OS (pages are touched as
// cells fill).
#include <cstdint>
#include <vector>

#include "kv/cell_table.h"
#include "kv/kv_layout.h"

namespace kvforge {

class KvStore {
 public:
  explicit KvStore(const KvLayout& layout);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  const KvLayout& layout() const { return layout_; }
  size_t bytes() const { return bytes_; }
  // Bytes one token takes in every (layer, head): sum of K and V row bytes.
  size_t bytes_per_token() const;
  // Bytes of one K row plus one V row of (layer, head).
  size_t head_row_bytes(int layer, int kv_head) const;
  // Bytes held when (layer, head) holds rows(layer, head) cells: what
  // bytes_used() reports for the policies whose heads fill unevenly.
  template <class RowsOf>
  size_t bytes_of_rows(RowsOf rows) const {
    size_t b = 0;
    for (int l = 0; l < layout_.shape.n_layer; ++l)
      for (int h = 0; h < layout_.shape.n_kv_head; ++h) b += (size_t)rows(l, h) * head_row_bytes(l, h);
    return b;
  }

  // Converts one f32 row pair (k_row: [head_dim_k], v_row: [head_dim_v], unread
  // for latent rows) to
  // the head's storage (Hadamard-rotated first if the head asks for it) and
  // stores it in `cell`.
  void write_row(int layer, int kv_head, int32_t cell, const float* k_row, const float* v_row);
  // Copies n cells from src_cell.. to dst_cell.. in every (layer, head)
  // (copy-on-write of a shared block; the runs must not overlap).
  void copy_cells(int32_t src_cell, int32_t dst_cell, int32_t n);
  // Copies n cells of (layer, head) from src_cell.. of src (a store with the
  // same row formats, or this one) to dst_cell.. here (runs must not overlap).
  void copy_rows_from(const KvStore& src, int layer, int kv_head, int32_t src_cell, int32_t dst_cell, int32_t n);
  // Moves rows of (layer, head) as planned by CellTable::plan_drop (each
  // move's dst below its src: compaction after dropped tokens).
  void move_rows(int layer, int kv_head, const std::vector<CellMove>& moves);
  // A run of n_rows cells starting at first_cell for (layer, head).
  KvSegment segment(int layer, int kv_head, int32_t first_cell, int32_t n_rows) const;
  // A view of (layer, head) with the storage fields filled and no segments.
  KvView base_view(int layer, int kv_head) const;

 private:
  struct Head {
    size_t k_off = 0, v_off = 0;  // byte offsets into data_
    size_t k_row = 0, v_row = 0;  // bytes per row
  };
  const Head& head(int layer, int kv_head) const { return heads_[(size_t)layer * layout_.shape.n_kv_head + kv_head]; }

  KvLayout layout_;
  std::vector<Head> heads_;  // [n_layer][n_kv_head]
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kvforge
