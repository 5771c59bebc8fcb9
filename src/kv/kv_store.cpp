#include "kv/kv_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <numeric>

#include "ops/hadamard.h"
#include "ops/quantize.h"
#include "util/error.h"
#include "util/fp16.h"

namespace kvforge {

KvStore::KvStore(const KvLayout& layout) : layout_(layout) {
  const KvShape& sh = layout.shape;
  heads_.resize(layout.heads.size());
  // K and V blocks of each head back to back, heads in (layer, head) order.
  for (size_t i = 0; i < heads_.size(); ++i) {
    const KvHeadSpec& spec = layout.heads[i];
    Head& h = heads_[i];
    h.k_row = kv_row_bytes(spec.storage, sh.head_dim_k);
    h.v_row = sh.v_in_k ? 0 : kv_row_bytes(spec.storage, sh.head_dim_v);  // latent: V lives in the K row
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

// One Hadamard block size for K and V rows alike (the view carries one):
// the largest power of two dividing both dims.
int hadamard_block_of(const KvHeadSpec& spec, const KvShape& sh) {
  return spec.hadamard ? hadamard_block(std::gcd(sh.head_dim_k, sh.head_dim_v)) : 0;
}

void store_row(const KvHeadSpec& spec, int block, const float* src, int dim, uint8_t* dst) {
  switch (spec.storage) {
    case KvStorage::F32: std::copy(src, src + dim, (float*)dst); return;
    case KvStorage::F16: return quantize_row(GgmlType::F16, src, dst, dim);  // F16C when available
    default: break;
  }
  if (!spec.hadamard) return quantize_row(kv_storage_type(spec.storage), src, dst, dim);
  thread_local std::vector<float> rot;  // [dim]
  rot.assign(src, src + dim);
  hadamard_rotate(rot.data(), dim, block);
  quantize_row(kv_storage_type(spec.storage), rot.data(), dst, dim);
}

}  // namespace

void KvStore::write_row(int layer, int kv_head, int32_t cell, const float* k_row, const float* v_row) {
  const KvHeadSpec& spec = layout_.head(layer, kv_head);
  const Head& h = head(layer, kv_head);
  const int block = hadamard_block_of(spec, layout_.shape);
  store_row(spec, block, k_row, layout_.shape.head_dim_k, data_ + h.k_off + (size_t)cell * h.k_row);
  if (!layout_.shape.v_in_k)
    store_row(spec, block, v_row, layout_.shape.head_dim_v, data_ + h.v_off + (size_t)cell * h.v_row);
}

namespace {
// n K rows and n V rows of one head, from cell src of (from, a) to cell dst of
// (to, b); a and b have the same row sizes. Forward copy: with from == to and
// dst < src it never reads what it overwrote.
template <class Head>
void copy_head_rows(const uint8_t* from, const Head& a, uint8_t* to, const Head& b, int32_t src, int32_t dst,
                    int32_t n) {
  std::copy_n(from + a.k_off + (size_t)src * a.k_row, (size_t)n * a.k_row, to + b.k_off + (size_t)dst * b.k_row);
  std::copy_n(from + a.v_off + (size_t)src * a.v_row, (size_t)n * a.v_row, to + b.v_off + (size_t)dst * b.v_row);
}
}  // namespace

void KvStore::copy_cells(int32_t src_cell, int32_t dst_cell, int32_t n) {
  for (const Head& h : heads_) copy_head_rows(data_, h, data_, h, src_cell, dst_cell, n);
}

void KvStore::copy_rows_from(const KvStore& src, int layer, int kv_head, int32_t src_cell, int32_t dst_cell,
                             int32_t n) {
  const Head& a = src.head(layer, kv_head);
  const Head& b = head(layer, kv_head);
  if (a.k_row != b.k_row || a.v_row != b.v_row) fail("KV store: rows of different formats cannot be copied");
  copy_head_rows(src.data_, a, data_, b, src_cell, dst_cell, n);
}

void KvStore::move_rows(int layer, int kv_head, const std::vector<CellMove>& moves) {
  const Head& h = head(layer, kv_head);
  for (const CellMove& m : moves) copy_head_rows(data_, h, data_, h, m.src, m.dst, m.n);  // each dst < its src
}

KvSegment KvStore::segment(int layer, int kv_head, int32_t first_cell, int32_t n_rows) const {
  const Head& h = head(layer, kv_head);
  const uint8_t* k = data_ + h.k_off + (size_t)first_cell * h.k_row;
  if (layout_.shape.v_in_k) return {k, k, n_rows};
  return {k, data_ + h.v_off + (size_t)first_cell * h.v_row, n_rows};
}

KvView KvStore::base_view(int layer, int kv_head) const {
  const KvHeadSpec& spec = layout_.head(layer, kv_head);
  KvView v;
  v.storage = spec.storage;
  v.hadamard_block = hadamard_block_of(spec, layout_.shape);
  v.head_dim_k = layout_.shape.head_dim_k;
  v.head_dim_v = layout_.shape.head_dim_v;
  v.v_in_k = layout_.shape.v_in_k;
  const Head& h = head(layer, kv_head);
  v.k_stride = h.k_row;
  v.v_stride = layout_.shape.v_in_k ? h.k_row : h.v_row;
  return v;
}

}  // namespace kvforge
