// Defaults of the optional parts of the KvCache interface, for caches whose
// heads are all alike (no per-head waves) and that have no soft gates.
#include "kv/kv_cache.h"

#include "util/error.h"

namespace kvforge {

void KvCache::write_head(int, int, const KvPlan&, const float*, const float*) {
  fail("KV cache '{}' writes all heads at once (no per-head waves)", describe());
}

KvView KvCache::stream_view(int, int, int32_t) const { fail("KV cache '{}' has no soft gates", describe()); }

void KvCache::set_gates(const std::vector<float>&, int32_t, int32_t) {
  fail("KV cache '{}' has no soft gates", describe());
}

}  // namespace kvforge
