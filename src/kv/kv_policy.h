#pragma once
// What the user asks of the KV cache (--kv POLICY), parsed once and resolved
// into a concrete cache. Grammar (documented in README):
//   full                      every token kept (default)
//   window:W[,sinks:S]        StreamingLLM: S attention sinks + the last W tokens
//   f16 | f32 | q8 | q4       storage precision of K/V rows
//   ...,hadamard              rotate rows before quantizing (q8/q4)
// Parts combine with '+', e.g. "window:1024,sinks:4+q8".
// Later policies (latent MLA rows, per-head mixed caches) extend KvPolicy
// with per-(layer, head) choices; make_kv_cache is the single place that
// turns a policy into storage.
#include <memory>
#include <string>

#include "kv/kv_cache.h"

namespace kvforge {

struct KvPolicy {
  int32_t window = 0;  // 0 = keep the full history
  int32_t sinks = 0;   // only with a window
  KvStorage storage = KvStorage::F16;
  bool hadamard = false;

  std::string describe() const;  // canonical spec string, parse_kv_policy(describe()) == *this
  bool operator==(const KvPolicy&) const = default;
};

// Throws kvforge::Error with the offending part named.
KvPolicy parse_kv_policy(const std::string& spec);

std::unique_ptr<KvCache> make_kv_cache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx);

}  // namespace kvforge
