#include "kv/kv_policy.h"

#include "util/error.h"

namespace kvforge {

std::string KvPolicy::describe() const {
  std::string s = window > 0 ? fmt::format("window:{},sinks:{}", window, sinks) : "full";
  s += std::string("+") + kv_storage_name(storage);
  if (hadamard) s += ",hadamard";
  return s;
}

KvPolicy parse_kv_policy(const std::string& spec) {
  KvPolicy p;
  if (spec.empty()) fail("empty --kv policy");
  size_t start = 0;
  while (start <= spec.size()) {
    size_t plus = spec.find('+', start);
    const std::string part = spec.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    if (part == "full") {
      p.window = 0;
    } else if (part == "f16" || part == "f32") {
      p.storage = parse_kv_storage(part);
    } else {
      fail("unknown KV policy part '{}' in '{}' (expected full, f16 or f32)", part, spec);
    }
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  return p;
}

std::unique_ptr<KvCache> make_kv_cache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx) {
  if (policy.window > 0) fail("the window policy is not available yet");
  return make_full_cache(shape, n_ctx, policy.storage);
}

}  // namespace kvforge
