#include "kv/kv_policy.h"

#include <charconv>
#include <vector>

#include "util/error.h"

namespace kvforge {

std::string KvPolicy::describe() const {
  std::string s = window > 0 ? fmt::format("window:{},sinks:{}", window, sinks) : "full";
  s += std::string("+") + kv_storage_name(storage);
  if (hadamard) s += ",hadamard";
  return s;
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// "key:N" with a strict decimal N in [lo, 2^30]; the whole item is named on error.
int32_t parse_count(const std::string& item, const std::string& key, int32_t lo, const std::string& spec) {
  const std::string num = item.substr(key.size() + 1);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (num.empty() || ec != std::errc() || end != num.data() + num.size())
    fail("bad number in '{}' of --kv '{}' (expected {}:N with N an integer)", item, spec, key);
  if (v < lo || v > (1 << 30)) fail("'{}' in --kv '{}' is out of range ({} must be in [{}, 2^30])", item, spec, key, lo);
  return (int32_t)v;
}

bool has_key(const std::string& item, const std::string& key) { return item.rfind(key + ":", 0) == 0; }

}  // namespace

KvPolicy parse_kv_policy(const std::string& spec) {
  if (spec.empty()) fail("empty --kv policy (expected e.g. full, window:1024,sinks:4, q8 or window:1024+q8)");
  KvPolicy p;
  bool seen_history = false, seen_storage = false, seen_hadamard = false;
  auto set_hadamard = [&](const std::string& part) {
    if (seen_hadamard) fail("'hadamard' given twice in --kv '{}'", spec);
    seen_hadamard = true;
    p.hadamard = true;
    (void)part;
  };
  for (const std::string& part : split(spec, '+')) {
    if (part.empty()) fail("empty part in --kv '{}' (stray '+')", spec);
    const std::vector<std::string> items = split(part, ',');
    for (const std::string& it : items)
      if (it.empty()) fail("empty option in part '{}' of --kv '{}' (stray ',')", part, spec);
    const std::string& head = items[0];
    if (head == "full" || has_key(head, "window")) {
      if (seen_history) fail("part '{}' of --kv '{}': the history (full or window) is already given", part, spec);
      seen_history = true;
      if (head == "full") {
        if (items.size() > 1) fail("unknown option '{}' after 'full' in --kv '{}' (full takes no options)", items[1], spec);
        continue;
      }
      p.window = parse_count(head, "window", 1, spec);
      p.sinks = kDefaultSinks;
      bool seen_sinks = false;
      for (size_t i = 1; i < items.size(); ++i) {
        if (!has_key(items[i], "sinks") || seen_sinks)
          fail("unknown or repeated option '{}' in part '{}' of --kv '{}' (window takes only sinks:S)", items[i],
               part, spec);
        seen_sinks = true;
        p.sinks = parse_count(items[i], "sinks", 0, spec);
      }
    } else if (head == "f16" || head == "f32" || head == "q8" || head == "q4") {
      if (seen_storage) fail("part '{}' of --kv '{}': the storage type is already given", part, spec);
      seen_storage = true;
      p.storage = parse_kv_storage(head);
      for (size_t i = 1; i < items.size(); ++i) {
        if (items[i] != "hadamard")
          fail("unknown option '{}' in part '{}' of --kv '{}' (a storage type takes only hadamard)", items[i], part,
               spec);
        set_hadamard(part);
      }
    } else if (head == "hadamard") {
      if (items.size() > 1) fail("unknown option '{}' after 'hadamard' in --kv '{}'", items[1], spec);
      set_hadamard(part);
    } else {
      fail("unknown part '{}' in --kv '{}' (expected full, window:W[,sinks:S], f16, f32, q8, q4 or hadamard)", part,
           spec);
    }
  }
  if (p.hadamard && !kv_storage_quantized(p.storage))
    fail("'hadamard' in --kv '{}' needs a quantized storage type (q8 or q4), not {}", spec,
         kv_storage_name(p.storage));
  return p;
}

std::unique_ptr<KvCache> make_kv_cache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx) {
  return make_kv_cache(resolve_kv_layout(policy, shape, n_ctx));
}

}  // namespace kvforge
