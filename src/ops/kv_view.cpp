#include "ops/kv_view.h"

#include "util/error.h"

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

}  // namespace kvforge
