#pragma once
// What the user asks of the KV cache (--kv POLICY), parsed once and resolved
// per (layer, KV head) into a KvLayout (kv_layout.h), which make_kv_cache
// turns into storage. Grammar (documented in README, "KV-cache policies"):
//
//   POLICY  := PART ('+' PART)*
//   PART    := 'full'                      every token kept (default)
//            | 'window:' W [',sinks:' S]   StreamingLLM: S sinks (default 4) + the last W tokens
//            | STORAGE [',hadamard']       precision of K/V rows (default f16)
//            | 'hadamard'                  rotate rows before quantizing (q8/q4 only)
//   STORAGE := 'f16' | 'f32' | 'q8' | 'q4'
//
// e.g. "window:1024,sinks:4+q8", "q4,hadamard", "full+f32". Each aspect
// (history, storage, hadamard) may be given once.
#include <memory>
#include <string>

#include "kv/kv_cache.h"
#include "kv/kv_layout.h"

namespace kvforge {

struct KvPolicy {
  int32_t window = 0;  // 0 = keep the full history
  int32_t sinks = 0;   // only with a window
  KvStorage storage = KvStorage::F16;
  bool hadamard = false;

  // Canonical spec: "full+f16", "window:64,sinks:4+q8,hadamard";
  // parse_kv_policy(describe()) == *this.
  std::string describe() const;
  bool operator==(const KvPolicy&) const = default;
};

constexpr int32_t kDefaultSinks = 4;

// Throws kvforge::Error with the offending part named.
KvPolicy parse_kv_policy(const std::string& spec);

// resolve_kv_layout + make_kv_cache(layout).
std::unique_ptr<KvCache> make_kv_cache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx);

}  // namespace kvforge
