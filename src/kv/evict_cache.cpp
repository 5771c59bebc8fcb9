#include "kv/evict_cache.h"

#include <climits>

#include "kv/cell_table.h"
#include "kv/evict_select.h"
#include "kv/kv_policy.h"
#include "kv/kv_store.h"
#include "ops/attention_weights.h"
#include "util/error.h"

namespace kvforge {

namespace {

class EvictCache final : public KvCache {
 public:
  explicit EvictCache(const KvLayout& layout)
      : store_(layout), cells_((int32_t)layout.heads.size(), layout.heads[0].n_cells), e_(layout.evict) {
    const size_t lanes = layout.heads.size();
    if (h2o()) score_.assign(lanes * cells_.n_cells(), 0.0f);
    else windows_.resize(lanes);
  }

  std::string describe() const override {
    const KvHeadSpec& h = store_.layout().heads[0];
    KvPolicy p{0, 0, h.storage, h.hadamard};
    p.evict = e_;
    return fmt::format("{}, {} cells", p.describe(), cells_.n_cells());
  }
  int32_t capacity() const override { return cells_.n_cells(); }
  int32_t n_past() const override { return n_past_; }
  // H2O makes room for every token; SnapKV only after an input.
  int64_t room() const override { return h2o() ? (int64_t)INT32_MAX - n_past_ : cells_.free(0); }
  int32_t max_wave(int layer, int kv_head, int32_t) const override { return wave(lane(layer, kv_head)); }

  size_t bytes() const override { return store_.bytes(); }
  size_t bytes_per_token() const override { return store_.bytes_per_token(); }
  KvShape shape() const override { return store_.layout().shape; }
  size_t bytes_used() const override {
    return store_.bytes_of_rows([&](int l, int h) { return cells_.used(lane(l, h)); });
  }

  void reset() override {
    n_past_ = 0;
    cells_.clear();
    for (Window& w : windows_) w.n = 0;
  }
  KvPlan plan(int32_t n_tokens) const override {
    if (n_tokens <= 0) fail("KV cache: cannot plan {} tokens", n_tokens);
    if (n_tokens > room())
      fail("context full: {} cached + {} new tokens exceed the context size of {} (raise -c)", cells_.used(0),
           n_tokens, cells_.n_cells());
    return {0, n_past_, n_tokens};
  }
  void write(int layer, const KvPlan& plan, const float* k, const float* v) override {
    for (int h = 0; h < store_.layout().shape.n_kv_head; ++h) write_head(layer, h, plan, k, v);
  }
  void write_head(int layer, int kv_head, const KvPlan& plan, const float* k, const float* v) override {
    const KvShape& sh = store_.layout().shape;
    const int32_t ln = lane(layer, kv_head);
    for (int32_t i = 0; i < plan.n_tokens; ++i) {
      const int32_t pos = plan.pos0 + i;
      if (cells_.free(ln) == 0) drop_for(layer, kv_head, pos);
      const int32_t cell = cells_.append(ln, pos);
      if (h2o()) score_[(size_t)ln * cells_.n_cells() + cell] = 0.0f;
      store_.write_row(layer, kv_head, cell, k + ((size_t)i * sh.n_kv_head + kv_head) * sh.head_dim_k,
                       sh.v_in_k ? nullptr : v + ((size_t)i * sh.n_kv_head + kv_head) * sh.head_dim_v);
    }
  }
  void commit(const KvPlan& plan, const int32_t*) override { n_past_ = plan.pos0 + plan.n_tokens; }

  KvView view(int layer, int kv_head, int32_t q_pos, int32_t) const override {
    KvView v = store_.base_view(layer, kv_head);
    v.n_segments = 1;
    v.segments[0] = store_.segment(layer, kv_head, 0, cells_.visible(lane(layer, kv_head), q_pos));
    return v;
  }

  bool observes() const override { return true; }
  void observe(int layer, int kv_head, int32_t q_pos, const float* q, int n_group, float scale, float cap) override {
    const int32_t ln = lane(layer, kv_head);
    if (h2o())
      return attn_weights_add(q, n_group, view(layer, kv_head, q_pos, 0), scale, cap,
                              &score_[(size_t)ln * cells_.n_cells()]);
    Window& w = windows_[ln];  // SnapKV: remember the last `window` queries
    const size_t qf = (size_t)n_group * store_.layout().shape.head_dim_k;
    w.q.resize((size_t)e_.window * qf);
    w.pos.resize(e_.window);
    const int32_t slot = w.n++ % e_.window;
    std::copy(q, q + qf, &w.q[slot * qf]);
    w.pos[slot] = q_pos;
    w.n_group = n_group, w.scale = scale, w.cap = cap;
  }
  void end_input() override {
    if (h2o() || cells_.used(0) <= e_.budget) return;
    const KvShape& sh = store_.layout().shape;
    for (int l = 0; l < sh.n_layer; ++l)
      for (int h = 0; h < sh.n_kv_head; ++h) snap(l, h);
  }

 private:
  // SnapKV's window for one lane: the last queries in a ring.
  struct Window {
    std::vector<float> q;      // [window][n_group][head_dim_k]
    std::vector<int32_t> pos;  // [window]
    int32_t n = 0;             // queries seen (slot of query i: i % window)
    int n_group = 0;
    float scale = 0, cap = 0;
  };

  bool h2o() const { return e_.kind == KvEviction::Kind::H2O; }
  int32_t lane(int layer, int kv_head) const { return layer * store_.layout().shape.n_kv_head + kv_head; }
  int32_t wave(int32_t ln) const { return h2o() ? std::max(1, cells_.free(ln)) : INT32_MAX; }

  void apply_drop(int layer, int kv_head, const std::vector<uint8_t>& drop) {
    const int32_t ln = lane(layer, kv_head);
    const CellDrop d = cells_.plan_drop(ln, drop);
    store_.move_rows(layer, kv_head, d.moves);
    if (h2o()) apply_moves(&score_[(size_t)ln * cells_.n_cells()], d.moves);
    cells_.apply(ln, d);
  }
  // H2O: make room for position pos.
  void drop_for(int layer, int kv_head, int32_t pos) {
    const int32_t ln = lane(layer, kv_head), used = cells_.used(ln);
    const int32_t victim =
        h2o() ? h2o_victim(cells_.positions(ln), &score_[(size_t)ln * cells_.n_cells()], used, pos, e_.recent) : -1;
    if (victim < 0) fail("KV cache {}: no cell to free for position {}", describe(), pos);
    std::vector<uint8_t> drop(used, 0);
    drop[victim] = 1;
    apply_drop(layer, kv_head, drop);
  }
  // SnapKV: keep `budget` tokens of the lane, chosen by its window's queries.
  void snap(int layer, int kv_head) {
    const int32_t ln = lane(layer, kv_head), used = cells_.used(ln);
    const Window& w = windows_[ln];
    std::vector<float> score(used, 0.0f);  // [used]
    const size_t qf = (size_t)w.n_group * store_.layout().shape.head_dim_k;
    for (int32_t i = std::max(0, w.n - e_.window); i < w.n; ++i) {  // oldest query first
      const int32_t slot = i % e_.window;
      attn_weights_add(&w.q[slot * qf], w.n_group, view(layer, kv_head, w.pos[slot], 0), w.scale, w.cap, score.data());
    }
    apply_drop(layer, kv_head, snapkv_drop(score.data(), used, e_.budget, e_.window, e_.pool));
  }

  KvStore store_;
  CellTable cells_;  // a lane per (layer, KV head)
  KvEviction e_;
  int32_t n_past_ = 0;
  std::vector<float> score_;     // H2O: [n_layer * n_kv_head][n_cells] accumulated attention of each cell
  std::vector<Window> windows_;  // SnapKV: [n_layer * n_kv_head]
};

}  // namespace

std::unique_ptr<KvCache> make_evict_cache(const KvLayout& layout) {
  for (const KvHeadSpec& h : layout.heads)
    if (h.window > 0 || h.gate != 1.0f || h.n_cells != layout.heads[0].n_cells)
      fail("token eviction ({}) keeps whole-history heads of one size only: this model's sliding-window layers or "
           "gates do not fit it",
           layout.evict.kind == KvEviction::Kind::H2O ? "h2o" : "snapkv");
  return std::make_unique<EvictCache>(layout);
}

}  // namespace kvforge
