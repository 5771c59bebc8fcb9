#include "kv/kv_policy.h"

#include <algorithm>
#include <charconv>
#include <vector>

#include "util/error.h"

namespace kvforge {

namespace {

std::string describe_heads(const KvHeadChoice& h) {
  using K = KvHeadChoice::Kind;
  std::string s;
  switch (h.kind) {
    case K::None: return "";
    case K::File: s = fmt::format("heads:{},sparsity:{}", h.file, h.sparsity); break;
    case K::Random: s = fmt::format("heads:random:{},sparsity:{}", h.seed, h.sparsity); break;
    case K::List:
      s = "heads:full:";
      for (size_t i = 0; i < h.full.size(); ++i) s += fmt::format("{}{}-{}", i ? "/" : "", h.full[i].first, h.full[i].second);
      break;
    case K::Gates: s = "gates:" + h.file; break;
  }
  return s + fmt::format(",sinks:{},recent:{}", h.sinks, h.recent);
}

std::string describe_evict(const KvEviction& e) {
  if (e.kind == KvEviction::Kind::H2O) return fmt::format("h2o:{},recent:{}", e.budget, e.recent);
  return fmt::format("snapkv:{},window:{},pool:{}", e.budget, e.window, e.pool);
}

}  // namespace

std::string KvPolicy::describe() const {
  std::string s = evict.kind != KvEviction::Kind::None   ? describe_evict(evict)
                  : heads.kind != KvHeadChoice::Kind::None ? describe_heads(heads)
                  : window > 0                           ? fmt::format("window:{},sinks:{}", window, sinks)
                                                         : "full";
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

// A strict decimal unsigned integer, or -1.
int64_t parse_uint(const std::string& s, int64_t max) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max) return -1;
  return v;
}

// "L-H/L-H/...": the (layer, KV head) pairs kept full, sorted, no repeats.
std::vector<std::pair<int32_t, int32_t>> parse_pairs(const std::string& list, const std::string& spec) {
  std::vector<std::pair<int32_t, int32_t>> out;
  for (const std::string& pair : split(list, '/')) {
    const size_t dash = pair.find('-');
    const int64_t l = dash == std::string::npos ? -1 : parse_uint(pair.substr(0, dash), 1 << 20);
    const int64_t h = dash == std::string::npos ? -1 : parse_uint(pair.substr(dash + 1), 1 << 20);
    if (l < 0 || h < 0)
      fail("bad head '{}' in --kv '{}' (expected heads:full:LAYER-HEAD/LAYER-HEAD/..., e.g. heads:full:0-1/3-0)", pair,
           spec);
    out.emplace_back((int32_t)l, (int32_t)h);
  }
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i] == out[i - 1]) fail("head {}-{} listed twice in --kv '{}'", out[i].first, out[i].second, spec);
  return out;
}

// heads:... / gates:... and their options sparsity, sinks, recent.
KvHeadChoice parse_heads(const std::vector<std::string>& items, const std::string& part, const std::string& spec) {
  using K = KvHeadChoice::Kind;
  KvHeadChoice h;
  const std::string& head = items[0];
  if (has_key(head, "gates")) {
    h.kind = K::Gates;
    h.file = head.substr(6);
  } else {
    const std::string what = head.substr(6);
    if (has_key(what, "random")) {
      h.kind = K::Random;
      const std::string num = what.substr(7);
      const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), h.seed);
      if (num.empty() || ec != std::errc() || end != num.data() + num.size())
        fail("bad seed in '{}' of --kv '{}' (expected heads:random:SEED with SEED an integer)", head, spec);
    } else if (has_key(what, "full")) {
      h.kind = K::List;
      h.full = parse_pairs(what.substr(5), spec);
    } else {
      h.kind = K::File;
      h.file = what;
    }
  }
  if ((h.kind == K::File || h.kind == K::Gates) && h.file.empty())
    fail("missing file name in '{}' of --kv '{}'", head, spec);
  bool seen_sparsity = false, seen_sinks = false, seen_recent = false;
  for (size_t i = 1; i < items.size(); ++i) {
    const std::string& it = items[i];
    if (has_key(it, "sparsity") && !seen_sparsity && (h.kind == K::File || h.kind == K::Random)) {
      seen_sparsity = true;
      const std::string num = it.substr(9);
      double v = -1;
      const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
      if (num.empty() || ec != std::errc() || end != num.data() + num.size())
        fail("bad number in '{}' of --kv '{}' (expected sparsity:S with S in [0, 1])", it, spec);
      if (!(v >= 0 && v <= 1)) fail("'{}' in --kv '{}': sparsity must be in [0, 1]", it, spec);
      h.sparsity = v;
    } else if (has_key(it, "sinks") && !seen_sinks) {
      seen_sinks = true;
      h.sinks = parse_count(it, "sinks", 0, spec);
    } else if (has_key(it, "recent") && !seen_recent) {
      seen_recent = true;
      h.recent = parse_count(it, "recent", 1, spec);
    } else {
      fail("unknown or repeated option '{}' in part '{}' of --kv '{}' ({} takes {}sinks:S and recent:R)", it, part,
           spec, h.kind == K::Gates ? "gates" : "heads",
           h.kind == K::File || h.kind == K::Random ? "sparsity:X, " : "");
    }
  }
  if ((h.kind == K::File || h.kind == K::Random) && !seen_sparsity)
    fail("part '{}' of --kv '{}' needs sparsity:S (the share of heads that stream, in [0, 1])", part, spec);
  return h;
}

// h2o:B[,recent:R] / snapkv:B[,window:W,pool:K].
KvEviction parse_evict(const std::vector<std::string>& items, const std::string& part, const std::string& spec) {
  using K = KvEviction::Kind;
  KvEviction e;
  const bool h2o = has_key(items[0], "h2o");
  e.kind = h2o ? K::H2O : K::SnapKV;
  e.budget = parse_count(items[0], h2o ? "h2o" : "snapkv", 1, spec);
  e.recent = e.budget / 2;
  bool seen_recent = false, seen_window = false, seen_pool = false;
  for (size_t i = 1; i < items.size(); ++i) {
    const std::string& it = items[i];
    if (h2o && has_key(it, "recent") && !seen_recent) {
      seen_recent = true;
      e.recent = parse_count(it, "recent", 0, spec);
    } else if (!h2o && has_key(it, "window") && !seen_window) {
      seen_window = true;
      e.window = parse_count(it, "window", 1, spec);
    } else if (!h2o && has_key(it, "pool") && !seen_pool) {
      seen_pool = true;
      e.pool = parse_count(it, "pool", 1, spec);
    } else {
      fail("unknown or repeated option '{}' in part '{}' of --kv '{}' ({})", it, part, spec,
           h2o ? "h2o takes only recent:R" : "snapkv takes window:W and pool:K");
    }
  }
  if (h2o && e.recent >= e.budget)
    fail("part '{}' of --kv '{}': recent:{} must be below the budget {} (room for heavy hitters)", part, spec,
         e.recent, e.budget);
  if (!h2o && e.window >= e.budget)
    fail("part '{}' of --kv '{}': window:{} must be below the budget {} (room for selected tokens)", part, spec,
         e.window, e.budget);
  if (!h2o && e.pool % 2 == 0) fail("part '{}' of --kv '{}': pool:{} must be odd (a centred kernel)", part, spec, e.pool);
  return e;
}

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
    if (has_key(head, "h2o") || has_key(head, "snapkv")) {
      if (seen_history) fail("part '{}' of --kv '{}': the history (full, window, heads or gates) is already given", part, spec);
      seen_history = true;
      p.evict = parse_evict(items, part, spec);
    } else if (has_key(head, "heads") || has_key(head, "gates")) {
      if (seen_history) fail("part '{}' of --kv '{}': the history (full, window, heads or gates) is already given", part, spec);
      seen_history = true;
      p.heads = parse_heads(items, part, spec);
    } else if (head == "full" || has_key(head, "window")) {
      if (seen_history) fail("part '{}' of --kv '{}': the history (full, window, heads or gates) is already given", part, spec);
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
      fail("unknown part '{}' in --kv '{}' (expected full, window:W[,sinks:S], heads:FILE,sparsity:S, "
           "heads:random:SEED,sparsity:S, heads:full:L-H/..., gates:FILE, h2o:B, snapkv:B, f16, f32, q8, q4 or hadamard)", part, spec);
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
