#include "kv/seq_rings.h"

#include <algorithm>

#include "util/error.h"

namespace kvforge {

// Streaming heads get max_seqs rings; full-history heads no cells here.
KvLayout SeqRings::ring_layout(KvLayout layout, int32_t max_seqs) {
  for (KvHeadSpec& h : layout.heads) {
    if (h.window > 0 && (int64_t)max_seqs * h.n_cells > INT32_MAX) fail("KV cache: {} rings of {} cells are too many", max_seqs, h.n_cells);
    h.n_cells = h.window > 0 ? max_seqs * h.n_cells : 0;
  }
  return layout;
}

SeqRings::SeqRings(const KvLayout& layout, int32_t max_seqs)
    : n_kv_head_(layout.shape.n_kv_head), store_(ring_layout(layout, max_seqs)) {
  for (const KvHeadSpec& h : layout.heads) {
    maps_.push_back(h.window > 0 ? CellMap{h.window, h.sinks, h.sinks + h.window} : CellMap{});
    if (h.window == 0) continue;
    if (h.n_cells != h.sinks + h.window) fail("KV cache: a window of {} + {} sinks in {} cells", h.window, h.sinks, h.n_cells);
    ++n_streaming_;
    max_window_ = std::max(max_window_, h.window);
    max_sinks_ = std::max(max_sinks_, h.sinks);
  }
}

void SeqRings::write_row(int layer, int kv_head, int32_t seq, int32_t pos, const float* k_row, const float* v_row) {
  store_.write_row(layer, kv_head, base(layer, kv_head, seq) + map(layer, kv_head).cell(pos), k_row, v_row);
}

KvView SeqRings::view(int layer, int kv_head, int32_t q_pos, int32_t seq) const {
  KvView v = store_.base_view(layer, kv_head);
  CellRun runs[KvView::kMaxSegments];
  v.n_segments = map(layer, kv_head).runs(q_pos, runs);
  const int32_t b = base(layer, kv_head, seq);
  for (int s = 0; s < v.n_segments; ++s) v.segments[s] = store_.segment(layer, kv_head, b + runs[s].first, runs[s].n);
  return v;
}

void SeqRings::fill(int32_t seq, int32_t n, const KvStore& src, const std::function<int32_t(int32_t)>& cell_of) {
  const int n_layer = (int)maps_.size() / n_kv_head_;
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_kv_head_; ++h) {
      const CellMap& m = map(l, h);
      if (m.window == 0) continue;
      auto copy = [&](int32_t p) { store_.copy_rows_from(src, l, h, cell_of(p), base(l, h, seq) + m.cell(p), 1); };
      for (int32_t p = 0; p < std::min(n, m.sinks); ++p) copy(p);
      for (int32_t p = std::max(m.sinks, n - m.window); p < n; ++p) copy(p);
    }
}

void SeqRings::copy_sequence(int32_t src, int32_t dst) {
  const int n_layer = (int)maps_.size() / n_kv_head_;
  for (int l = 0; l < n_layer; ++l)
    for (int h = 0; h < n_kv_head_; ++h)
      if (map(l, h).window > 0)
        store_.copy_rows_from(store_, l, h, base(l, h, src), base(l, h, dst), map(l, h).n_cells);
}

size_t SeqRings::bytes_used(int32_t n_past) const {
  return store_.bytes_of_rows([&](int l, int h) { return map(l, h).used(n_past); });  // full heads: 0 cells here
}

}  // namespace kvforge
