#pragma once
// The streaming heads of the multi-sequence cache (kv/paged_cache.h). Every
// (layer, KV head) that keeps a window (--kv window:W, the streaming heads of
// a per-head mixed cache, a model's sliding-window layers) gets, per
// sequence, a ring of its own, laid out and read exactly as the
// single-sequence cache's (kv/cell_map.h):
//
//   (layer, head) with window W, sinks S -> cells [max_seqs][S + W]
//   position p of sequence s in cell s * (S + W) + CellMap::cell(p)
//
// Why rings and not the pool's blocks: attention cuts a view into chunks
// from the start of each run of rows (ops/attention.h), and the rows a ring
// shows as one run (the window past its wrap) straddle 256-position blocks;
// only the same ring gives the same chunks, hence the same bits, as
// `kvforge run` with that policy. A ring also bounds what a streaming head
// holds (S + W cells) however long its sequence runs.
#include <cstdint>
#include <functional>
#include <vector>

#include "kv/cell_map.h"
#include "kv/kv_layout.h"
#include "kv/kv_store.h"

namespace kvforge {

class SeqRings {
 public:
  // layout: every head's window and storage (n_cells of full heads unused).
  SeqRings(const KvLayout& layout, int32_t max_seqs);

  bool any() const { return n_streaming_ > 0; }
  bool all() const { return n_streaming_ == (int32_t)maps_.size(); }  // every head streams
  int32_t n_streaming() const { return n_streaming_; }
  bool streams(int layer, int kv_head) const { return map(layer, kv_head).window > 0; }
  // Largest sinks + window of any streaming head: the positions a sequence
  // after n tokens may still need are its first `sinks` and n - window .. n-1.
  int32_t max_window() const { return max_window_; }
  int32_t max_sinks() const { return max_sinks_; }
  // See KvCache::max_wave (INT32_MAX for a full-history head).
  int32_t max_wave(int layer, int kv_head, int32_t pos0) const { return map(layer, kv_head).max_wave(pos0); }

  // k_row: [head_dim_k], v_row: [head_dim_v] of (layer, head) at pos.
  void write_row(int layer, int kv_head, int32_t seq, int32_t pos, const float* k_row, const float* v_row);
  // The runs a query of seq at q_pos sees in a streaming head.
  KvView view(int layer, int kv_head, int32_t q_pos, int32_t seq) const;
  // Every ring of seq as after writing a text's n tokens, whose position p
  // lives in cell cell_of(p) of src (same row formats): a shared prefix.
  void fill(int32_t seq, int32_t n, const KvStore& src, const std::function<int32_t(int32_t)>& cell_of);
  void copy_sequence(int32_t src, int32_t dst);  // dst's rings = src's

  size_t bytes() const { return store_.bytes(); }
  size_t bytes_used(int32_t n_past) const;  // one sequence's rings after n_past tokens

 private:
  const CellMap& map(int layer, int kv_head) const { return maps_[(size_t)layer * n_kv_head_ + kv_head]; }
  int32_t base(int layer, int kv_head, int32_t seq) const { return seq * map(layer, kv_head).n_cells; }

  static KvLayout ring_layout(KvLayout layout, int32_t max_seqs);
  int n_kv_head_ = 0;
  std::vector<CellMap> maps_;  // [n_layer][n_kv_head]  window 0: the head is not here (pool only)
  int32_t n_streaming_ = 0, max_window_ = 0, max_sinks_ = 0;
  KvStore store_;
};

}  // namespace kvforge
