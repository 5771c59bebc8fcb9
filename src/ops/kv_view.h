#pragma once
// What the attention kernels read of a KV cache: the storage precision of its
// rows and runs of rows in position order. It lives below kv/ so that ops
// never includes the cache policies (kv/ builds views, ops reads them).
#include <cstddef>
#include <cstdint>
#include <string>

#include "ops/ggml_types.h"

namespace kvforge {

// How cached K/V rows are stored. Every path (prefill, decode, cache off)
// stores through the same precision, so it is part of exactness.
// Q8_0 / Q4_0 rows are 32-element blocks with an fp16 scale (ops/ggml_types.h).
enum class KvStorage { F32, F16, Q8_0, Q4_0 };
const char* kv_storage_name(KvStorage s);             // "f32" | "f16" | "q8" | "q4"
KvStorage parse_kv_storage(const std::string& name);  // inverse of kv_storage_name, throws kvforge::Error
bool kv_storage_quantized(KvStorage s);               // stored in 32-element blocks
size_t kv_row_bytes(KvStorage s, int dim);            // bytes of one row of dim elements
GgmlType kv_storage_type(KvStorage s);                // the block format the ops see

// A contiguous run of cells. Row r's K starts at k + r * view.k_stride bytes,
// its V at v + r * view.v_stride. V may live inside the K rows (latent cache,
// MLA: the row is [c_KV | k_pe] and V is its first head_dim_v values, so
// v == k and v_stride == k_stride).
struct KvSegment {
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t n_rows = 0;
};

// Rows of one (layer, KV head) visible to a query, as runs of contiguous
// cells in position order: first the n_blocks runs of a paged cache's block
// table (kept by the cache, one array per sequence and head, so a view stays
// small whatever the context), then up to kMaxSegments runs of its own (a
// window cache: sinks, then the ring from its oldest row to the end of
// storage, then its wrapped start; a paged cache: the query's last block).
struct KvView {
  static constexpr int kMaxSegments = 3;
  KvStorage storage = KvStorage::F16;
  // 0: rows stored as given. Else rows were rotated by the block-diagonal
  // Hadamard transform with blocks of this size (ops/hadamard.h) before
  // quantizing; q and the output are rotated with the same blocks. Carried
  // here because a V that is a prefix of a longer K row keeps the K row's
  // blocks, not those hadamard_block(head_dim_v) would give.
  int hadamard_block = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  // Latent rows (MLA): V is the first head_dim_v values of each K row and
  // every query head of the model reads them, so the kernels take all heads
  // at once per tile (ops/attention_avx2.cpp).
  bool v_in_k = false;
  size_t k_stride = 0;  // bytes from one K row to the next
  size_t v_stride = 0;  // bytes from one V row to the next
  const KvSegment* blocks = nullptr;  // [n_blocks], owned by the cache
  int n_blocks = 0;
  int n_segments = 0;  // runs in segments[], after the blocks
  KvSegment segments[kMaxSegments];

  int count() const { return n_blocks + n_segments; }  // runs in all
  const KvSegment& segment(int i) const { return i < n_blocks ? blocks[i] : segments[i - n_blocks]; }
  int32_t n_rows() const {
    int32_t n = 0;
    for (int i = 0; i < count(); ++i) n += segment(i).n_rows;
    return n;
  }
};

}  // namespace kvforge
