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
//            | HEADS [',sinks:' S] [',recent:' R]   per-head mixed history (S default 16, R 64)
//            | 'gates:' FILE [',sinks:' S] [',recent:' R]   soft gates over a full history
//            | 'h2o:' B [',recent:' R]     H2O: B tokens per head, the last R (default B/2) + heavy hitters
//            | 'snapkv:' B [',window:' W] [',pool:' K]   SnapKV: B tokens per head (W 32, K 7)
//   HEADS   := 'heads:' FILE ',sparsity:' X          RLKV / DuoAttention gate file
//            | 'heads:random:' SEED ',sparsity:' X   random gates, same selection rule
//            | 'heads:full:' L '-' H ('/' L '-' H)*  these (layer, KV head) pairs full
//   STORAGE := 'f16' | 'f32' | 'q8' | 'q4'
//
// e.g. "window:1024,sinks:4+q8", "q4,hadamard", "full+f32",
// "heads:adapter_weights.tsv,sparsity:0.5+q8". Each aspect (history, storage,
// hadamard) may be given once. FILE may not contain ',' or '+'.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/kv_layout.h"

namespace kvforge {

// Per-head history (RLKV / DuoAttention, SPEC.md §4): some (layer, KV head)
// keep the full history, the others stream (`sinks` + the last `recent`
// tokens, in cells of their own); or, with Gates, every head keeps the full
// history and blends full and streaming attention with its gate alpha.
struct KvHeadChoice {
  enum class Kind : uint8_t { None, File, Random, List, Gates };
  Kind kind = Kind::None;
  std::string file;                               // File, Gates: the gate table (head_pattern.h)
  uint64_t seed = 0;                              // Random
  std::vector<std::pair<int32_t, int32_t>> full;  // List: sorted (layer, KV head) pairs kept full
  double sparsity = 0;                            // File, Random: share of streaming heads
  int32_t sinks = 16, recent = 64;                // RLKV's deployment defaults

  bool operator==(const KvHeadChoice&) const = default;
};

struct KvPolicy {
  int32_t window = 0;  // 0 = keep the full history
  int32_t sinks = 0;   // only with a window
  KvStorage storage = KvStorage::F16;
  bool hadamard = false;
  KvHeadChoice heads = {};  // kind None: every head has the history above
  KvEviction evict = {};    // kind None: no token eviction

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
