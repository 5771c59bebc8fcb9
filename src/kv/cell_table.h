#pragma once
// Cells that hold any position: the metadata of caches whose cells are not
// pure arithmetic on positions (cell_map.h), i.e. token eviction (H2O,
// SnapKV) and, by the same rule, a paged cache's rows (paged_cache.h).
//
// Per lane (one (layer, KV head), or one sequence's rows) the first used()
// cells hold strictly increasing positions, compacted at the front:
//
//   pos: [n_lanes][n_cells]  position held by each cell (cells >= used(): free)
//
// so the rows a query at q_pos may see (causal mask by stored position) are
// one run, cells [0, visible(q_pos)), in position order: every attention
// kernel reads it like a full cache's rows, and a cache that never drops a
// token is cell == position, the full cache bit for bit. Keys are cached
// after RoPE at their own position, so moving a row never re-rotates it.
//
// Dropping tokens is "plan" apart from "apply" (as llama.cpp's memory
// interface): plan_drop() turns the cells to drop into row moves (metadata
// only, nothing changes); the cache applies the same moves to its storage
// (KvStore::move_rows) and to any per-cell state of its own (apply_moves),
// and apply() to the positions.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvforge {

// Rows [src, src + n) move to [dst, dst + n), dst < src; applied in order.
struct CellMove {
  int32_t src = 0, dst = 0, n = 0;
};

// What a drop does to one lane: the moves, and the lane's used cells after it.
struct CellDrop {
  std::vector<CellMove> moves;
  int32_t used = 0;
};

class CellTable {
 public:
  CellTable(int32_t n_lanes, int32_t n_cells);

  int32_t n_cells() const { return n_cells_; }
  int32_t used(int32_t lane) const { return used_[lane]; }
  int32_t free(int32_t lane) const { return n_cells_ - used_[lane]; }
  const int32_t* positions(int32_t lane) const { return &pos_[(size_t)lane * n_cells_]; }
  // Cells a query at q_pos sees: those holding positions <= q_pos.
  int32_t visible(int32_t lane, int32_t q_pos) const;

  void clear();
  // Position pos goes into the next free cell, which is returned; pos must
  // exceed every position held (throws kvforge::Error when full).
  int32_t append(int32_t lane, int32_t pos);

  // Plan: the moves that drop the cells flagged in drop ([used(lane)], 1 =
  // drop) and close the gaps, keeping the order. Changes nothing.
  CellDrop plan_drop(int32_t lane, const std::vector<uint8_t>& drop) const;
  // Apply a plan to the positions of the lane.
  void apply(int32_t lane, const CellDrop& d);

 private:
  int32_t n_cells_ = 0;
  std::vector<int32_t> pos_;   // [n_lanes][n_cells]
  std::vector<int32_t> used_;  // [n_lanes]
};

// The same moves over any per-cell array of a lane (cell i at data[i]).
template <class T>
void apply_moves(T* data, const std::vector<CellMove>& moves) {
  for (const CellMove& m : moves)
    for (int32_t i = 0; i < m.n; ++i) data[m.dst + i] = data[m.src + i];
}

}  // namespace kvforge
