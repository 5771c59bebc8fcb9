#include "kv/kv_store.h"

#include <sys/mman.h>

#include "util/error.h"
#include "util/fp16.h"

namespace kvforge {

const char* kv_storage_name(KvStorage s) { return s == KvStorage::F32 ? "f32" : "f16"; }

KvStorage parse_kv_storage(const std::string& name) {
  if (name == "f16") return KvStorage::F16;
  if (name == "f32") return KvStorage::F32;
  fail("unknown KV storage type '{}' (expected f16 or f32)", name);
}

size_t kv_storage_bytes(KvStorage s) { return s == KvStorage::F32 ? 4 : 2; }

namespace {
// Anonymous mappings: reserved up front, physical pages only as cells fill,
// so a large context costs memory only when it is used.
uint8_t* map_bytes(size_t n) {
  if (n == 0) return nullptr;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("cannot allocate {} bytes for the KV cache", n);
  return (uint8_t*)p;
}
}  // namespace

KvStore::KvStore(const KvShape& shape, int32_t n_cells, KvStorage storage)
    : shape_(shape), n_cells_(n_cells), storage_(storage), elem_(kv_storage_bytes(storage)) {
  const size_t per_head_cells = (size_t)shape.n_layer * shape.n_kv_head * (size_t)n_cells;
  k_bytes_ = per_head_cells * shape.head_dim_k * elem_;
  v_bytes_ = per_head_cells * shape.head_dim_v * elem_;
  k_ = map_bytes(k_bytes_);
  v_ = map_bytes(v_bytes_);
}

KvStore::~KvStore() {
  if (k_) munmap(k_, k_bytes_);
  if (v_) munmap(v_, v_bytes_);
}

size_t KvStore::bytes_per_cell() const {
  return (size_t)shape_.n_layer * shape_.n_kv_head * (shape_.head_dim_k + shape_.head_dim_v) * elem_;
}

size_t KvStore::k_offset(int layer, int head, int32_t cell) const {
  return (((size_t)layer * shape_.n_kv_head + head) * n_cells_ + cell) * shape_.head_dim_k * elem_;
}
size_t KvStore::v_offset(int layer, int head, int32_t cell) const {
  return (((size_t)layer * shape_.n_kv_head + head) * n_cells_ + cell) * shape_.head_dim_v * elem_;
}

void KvStore::write_token(int layer, int32_t cell, int32_t i, const float* k, const float* v) {
  const int dk = shape_.head_dim_k, dv = shape_.head_dim_v, nh = shape_.n_kv_head;
  for (int h = 0; h < nh; ++h) {
    const float* ks = k + ((size_t)i * nh + h) * dk;
    const float* vs = v + ((size_t)i * nh + h) * dv;
    uint8_t* kd = k_ + k_offset(layer, h, cell);
    uint8_t* vd = v_ + v_offset(layer, h, cell);
    if (storage_ == KvStorage::F32) {
      std::copy(ks, ks + dk, (float*)kd);
      std::copy(vs, vs + dv, (float*)vd);
    } else {
      for (int d = 0; d < dk; ++d) ((fp16_t*)kd)[d] = fp32_to_fp16(ks[d]);
      for (int d = 0; d < dv; ++d) ((fp16_t*)vd)[d] = fp32_to_fp16(vs[d]);
    }
  }
}

KvSegment KvStore::segment(int layer, int kv_head, int32_t first_cell, int32_t n_rows) const {
  return {k_ + k_offset(layer, kv_head, first_cell), v_ + v_offset(layer, kv_head, first_cell), n_rows};
}

KvView KvStore::base_view() const {
  KvView v;
  v.storage = storage_;
  v.head_dim_k = shape_.head_dim_k;
  v.head_dim_v = shape_.head_dim_v;
  return v;
}

}  // namespace kvforge
