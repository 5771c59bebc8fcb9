// The one cache implementation behind every layout: per (layer, KV head) a
// CellMap (full history or sinks + ring) and a block of KvStore storage in
// the head's precision. Positions are shared by all heads (one text); which
// cell a position lands in is per head.
#include <algorithm>
#include <climits>

#include "kv/cell_map.h"
#include "kv/evict_cache.h"
#include "kv/kv_layout.h"
#include "kv/kv_policy.h"
#include "kv/kv_store.h"
#include "util/error.h"

namespace kvforge {

namespace {

class LayoutCache final : public KvCache {
 public:
  explicit LayoutCache(const KvLayout& layout) : store_(layout) {
    maps_.reserve(layout.heads.size());
    for (const KvHeadSpec& h : layout.heads) {
      maps_.push_back({h.window, h.sinks, h.n_cells});
      gates_.push_back({h.gate, h.stream_sinks, h.stream_recent});
      capacity_ = std::max(capacity_, h.n_cells);
      if (h.window == 0) max_full_ = max_full_ < 0 ? h.n_cells : std::min(max_full_, h.n_cells);
    }
  }

  std::string describe() const override {
    const KvLayout& L = store_.layout();
    if (L.uniform()) {
      const KvHeadSpec& h = L.heads[0];
      KvPolicy p{h.window, h.sinks, h.storage, h.hadamard};
      // "latent": one [c_KV | k_pe] row per token and layer (MLA), V inside it.
      return fmt::format("{}{}, {} cells", p.describe(), L.shape.v_in_k ? " latent" : "", h.n_cells);
    }
    size_t windowed = 0, gated = 0;
    for (const KvHeadSpec& h : L.heads) windowed += h.window > 0, gated += h.gate != 1.0f;
    if (windowed == 0 && gated > 0) return fmt::format("gated: {} of {} heads blend in streaming attention", gated, L.heads.size());
    return fmt::format("mixed: {} of {} heads streaming", windowed, L.heads.size());
  }
  int32_t capacity() const override { return capacity_; }
  int32_t n_past() const override { return n_past_; }
  int64_t room() const override { return (max_full_ < 0 ? (int64_t)INT32_MAX : max_full_) - n_past_; }

  size_t bytes() const override { return store_.bytes(); }
  size_t bytes_per_token() const override { return store_.bytes_per_token(); }
  KvShape shape() const override { return store_.layout().shape; }
  size_t bytes_used() const override {
    return store_.bytes_of_rows([&](int l, int h) { return map(l, h).used(n_past_); });
  }

  void reset() override { n_past_ = 0; }

  KvPlan plan(int32_t n_tokens) const override {
    if (n_tokens <= 0) fail("KV cache: cannot plan {} tokens", n_tokens);
    if (n_tokens > room())
      fail("context full: {} cached + {} new tokens exceed the context size of {} (raise -c, use a window "
           "policy --kv window:W, or start a new text)",
           n_past_, n_tokens, n_past_ + room());
    return {0, n_past_, n_tokens};
  }

  void write(int layer, const KvPlan& plan, const float* k, const float* v) override {
    const KvShape& sh = store_.layout().shape;
    const int nh = sh.n_kv_head;
    for (int h = 0; h < nh; ++h) {
      const CellMap& m = map(layer, h);
      for (int32_t i = 0; i < plan.n_tokens; ++i)
        store_.write_row(layer, h, m.cell(plan.pos0 + i), k + ((size_t)i * nh + h) * sh.head_dim_k,
                         sh.v_in_k ? nullptr : v + ((size_t)i * nh + h) * sh.head_dim_v);
    }
  }

  void commit(const KvPlan& plan, const int32_t*) override { n_past_ = plan.pos0 + plan.n_tokens; }

  int32_t max_wave(int layer, int kv_head, int32_t pos0) const override { return map(layer, kv_head).max_wave(pos0); }

  void write_head(int layer, int kv_head, const KvPlan& plan, const float* k, const float* v) override {
    const KvShape& sh = store_.layout().shape;
    const int nh = sh.n_kv_head;
    const CellMap& m = map(layer, kv_head);
    for (int32_t i = 0; i < plan.n_tokens; ++i)
      store_.write_row(layer, kv_head, m.cell(plan.pos0 + i), k + ((size_t)i * nh + kv_head) * sh.head_dim_k,
                       v + ((size_t)i * nh + kv_head) * sh.head_dim_v);
  }

  float gate(int layer, int kv_head) const override { return gates_[index(layer, kv_head)].alpha; }

  KvView stream_view(int layer, int kv_head, int32_t q_pos) const override {
    const Gate& g = gates_[index(layer, kv_head)];
    KvView v = store_.base_view(layer, kv_head);
    const int32_t n = q_pos + 1;
    if (n <= g.sinks + g.recent) {  // everything visible: the full view's single run
      v.n_segments = 1;
      v.segments[0] = store_.segment(layer, kv_head, 0, n);
      return v;
    }
    v.n_segments = 0;
    if (g.sinks > 0) v.segments[v.n_segments++] = store_.segment(layer, kv_head, 0, g.sinks);
    v.segments[v.n_segments++] = store_.segment(layer, kv_head, n - g.recent, g.recent);
    return v;
  }

  void set_gates(const std::vector<float>& alpha, int32_t sinks, int32_t recent) override {
    const KvLayout& L = store_.layout();
    if (L.shape.v_in_k)
      fail("soft gates do not apply to a latent (MLA) cache: every head reads its one row per layer");
    if (alpha.size() != L.heads.size())
      fail("{} gate values for {} layers x {} KV heads", alpha.size(), L.shape.n_layer, L.shape.n_kv_head);
    if (sinks < 0 || recent < 1) fail("soft gates need sinks >= 0 and recent >= 1, got {} and {}", sinks, recent);
    for (size_t i = 0; i < alpha.size(); ++i) {
      if (!(alpha[i] >= 0 && alpha[i] <= 1)) fail("gate {} of head {} is outside [0, 1]", alpha[i], i);
      if (L.heads[i].window > 0) fail("soft gates need a full-history cache, but head {} streams", i);
    }
    for (size_t i = 0; i < alpha.size(); ++i) gates_[i] = {alpha[i], sinks, recent};
  }

  KvView view(int layer, int kv_head, int32_t q_pos, int32_t /*seq: always 0*/) const override {
    KvView v = store_.base_view(layer, kv_head);
    CellRun runs[KvView::kMaxSegments];
    v.n_segments = map(layer, kv_head).runs(q_pos, runs);
    for (int s = 0; s < v.n_segments; ++s) v.segments[s] = store_.segment(layer, kv_head, runs[s].first, runs[s].n);
    return v;
  }

 private:
  size_t index(int layer, int kv_head) const { return (size_t)layer * store_.layout().shape.n_kv_head + kv_head; }
  const CellMap& map(int layer, int kv_head) const { return maps_[index(layer, kv_head)]; }

  struct Gate {
    float alpha = 1.0f;
    int32_t sinks = 0, recent = 0;
  };

  KvStore store_;
  std::vector<CellMap> maps_;  // [n_layer][n_kv_head]
  std::vector<Gate> gates_;    // [n_layer][n_kv_head]
  int32_t capacity_ = 0;
  int32_t max_full_ = -1;  // cells of the smallest full-history head; -1: none (unbounded)
  int32_t n_past_ = 0;
};

}  // namespace

std::unique_ptr<KvCache> make_kv_cache(const KvLayout& layout) {
  if (layout.heads.size() != (size_t)layout.shape.n_layer * layout.shape.n_kv_head)
    fail("KV layout has {} head specs for {} layers x {} KV heads", layout.heads.size(), layout.shape.n_layer,
         layout.shape.n_kv_head);
  if (layout.evict.kind != KvEviction::Kind::None) return make_evict_cache(layout);
  for (const KvHeadSpec& h : layout.heads)
    if (h.n_cells <= 0 || (h.window > 0 && h.n_cells != h.sinks + h.window) || h.sinks < 0 || h.window < 0 ||
        (h.window > 0 && h.gate != 1.0f))
      fail("invalid KV head spec: window {}, sinks {}, {} cells, gate {} (soft gates need the full history)", h.window,
           h.sinks, h.n_cells, h.gate);
  return std::make_unique<LayoutCache>(layout);
}

}  // namespace kvforge
