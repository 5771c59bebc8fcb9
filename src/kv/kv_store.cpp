#include "kv/kv_store.h"

#include <sys/mman.h>

#include <algorithm>

#include "ops/hadamard.h"
#include "ops/quantize.h"
#include "util/error.h"
#include "util/fp16.h"

namespace kvforge {

const char* kv_storage_name(KvStorage s) {
  switch (s) {
    case KvStorage::F32: return "f32";
    case KvStorage::F16: return "f16";
    case KvStorage::Q8_0: return "q8";
    case KvStorage::Q4_0: return "q4";
  }
  return "?";
}

KvStorage parse_kv_storage(const std::string& name) {
  for (KvStorage s : {KvStorage::F16, KvStorage::F32, KvStorage::Q8_0, KvStorage::Q4_0})
    if (name == kv_storage_name(s)) return s;
  fail("unknown KV storage type '{}' (expected f16, f32, q8 or q4)", name);
}

bool kv_storage_quantized(KvStorage s) { return s == KvStorage::Q8_0 || s == KvStorage::Q4_0; }

GgmlType kv_storage_type(KvStorage s) {
  switch (s) {
    case KvStorage::F32: return GgmlType::F32;
    case KvStorage::F16: return GgmlType::F16;
    case KvStorage::Q8_0: return GgmlType::Q8_0;
    case KvStorage::Q4_0: return GgmlType::Q4_0;
  }
  return GgmlType::F16;
}

size_t kv_row_bytes(KvStorage s, int dim) { return row_bytes(kv_storage_type(s), dim); }

KvStore::KvStore(const KvLayout& layout) : layout_(layout) {
  const KvShape& sh = layout.shape;
  heads_.resize(layout.heads.size());
  // K and V blocks of each head back to back, heads in (layer, head) order.
  for (size_t i = 0; i < heads_.size(); ++i) {
    const KvHeadSpec& spec = layout.heads[i];
    Head& h = heads_[i];
    h.k_row = kv_row_bytes(spec.storage, sh.head_dim_k);
    h.v_row = kv_row_bytes(spec.storage, sh.head_dim_v);
    h.k_off = bytes_;
    h.v_off = h.k_off + (size_t)spec.n_cells * h.k_row;
    bytes_ = h.v_off + (size_t)spec.n_cells * h.v_row;
  }
  if (bytes_ == 0) return;
  // Anonymous mapping: reserved up front, physical pages only as cells fill,
  // so a large context costs memory only when it is used.
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("cannot allocate {} bytes for the KV cache", bytes_);
  data_ = (uint8_t*)p;
}

KvStore::~KvStore() {
  if (data_) munmap(data_, bytes_);
}

size_t KvStore::bytes_per_token() const {
  size_t b = 0;
  for (const Head& h : heads_) b += h.k_row + h.v_row;
  return b;
}

size_t KvStore::head_row_bytes(int layer, int kv_head) const {
  const Head& h = head(layer, kv_head);
  return h.k_row + h.v_row;
}

namespace {

void store_row(const KvHeadSpec& spec, const float* src, int dim, uint8_t* dst) {
  switch (spec.storage) {
    case KvStorage::F32: std::copy(src, src + dim, (float*)dst); return;
    case KvStorage::F16: return quantize_row(GgmlType::F16, src, dst, dim);  // F16C when available
    default: break;
  }
  if (!spec.hadamard) return quantize_row(kv_storage_type(spec.storage), src, dst, dim);
  thread_local std::vector<float> rot;  // [dim]
  rot.assign(src, src + dim);
  hadamard_rotate(rot.data(), dim);
  quantize_row(kv_storage_type(spec.storage), rot.data(), dst, dim);
}

}  // namespace

void KvStore::write_row(int layer, int kv_head, int32_t cell, const float* k_row, const float* v_row) {
  const KvHeadSpec& spec = layout_.head(layer, kv_head);
  const Head& h = head(layer, kv_head);
  store_row(spec, k_row, layout_.shape.head_dim_k, data_ + h.k_off + (size_t)cell * h.k_row);
  store_row(spec, v_row, layout_.shape.head_dim_v, data_ + h.v_off + (size_t)cell * h.v_row);
}

void KvStore::copy_cells(int32_t src_cell, int32_t dst_cell, int32_t n) {
  for (const Head& h : heads_) {
    std::copy_n(data_ + h.k_off + (size_t)src_cell * h.k_row, (size_t)n * h.k_row, data_ + h.k_off + (size_t)dst_cell * h.k_row);
    std::copy_n(data_ + h.v_off + (size_t)src_cell * h.v_row, (size_t)n * h.v_row, data_ + h.v_off + (size_t)dst_cell * h.v_row);
  }
}

KvSegment KvStore::segment(int layer, int kv_head, int32_t first_cell, int32_t n_rows) const {
  const Head& h = head(layer, kv_head);
  return {data_ + h.k_off + (size_t)first_cell * h.k_row, data_ + h.v_off + (size_t)first_cell * h.v_row, n_rows};
}

KvView KvStore::base_view(int layer, int kv_head) const {
  const KvHeadSpec& spec = layout_.head(layer, kv_head);
  KvView v;
  v.storage = spec.storage;
  v.hadamard = spec.hadamard;
  v.head_dim_k = layout_.shape.head_dim_k;
  v.head_dim_v = layout_.shape.head_dim_v;
  return v;
}

}  // namespace kvforge
