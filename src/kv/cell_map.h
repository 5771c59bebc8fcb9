#pragma once
// Cell metadata of one (layer, KV head): which cell holds which position, and
// which cells a query sees. Pure arithmetic on positions, no per-cell arrays:
//
//  - full (window == 0): cell == position.
//  - window W with S sinks (StreamingLLM): positions 0..S-1 keep cells
//    0..S-1 forever; later positions cycle through a ring of W cells,
//    cell(p) = S + (p - S) mod W. A query at position q sees the sinks and
//    the last W positions q-W+1..q (itself included), at most S + W rows.
//
// Positions are absolute: keys are cached RoPE-rotated at their true
// position and queries use theirs, so a window at least as long as the text
// is exactly the full cache (same cells, same single run of rows).
#include <algorithm>
#include <climits>
#include <cstdint>

namespace kvforge {

struct CellRun {
  int32_t first = 0;  // first cell
  int32_t n = 0;      // consecutive cells, in position order
};

struct CellMap {
  int32_t window = 0;  // 0 = full history
  int32_t sinks = 0;
  int32_t n_cells = 0;

  int32_t cell(int32_t pos) const { return window == 0 || pos < sinks ? pos : sinks + (pos - sinks) % window; }

  // Cells visible to a query at q_pos, in position order: one run until the
  // ring wraps, then sinks, ring tail (oldest kept row on), ring head. Returns
  // the number of runs (<= 3). Depends only on q_pos, never on the batch.
  int runs(int32_t q_pos, CellRun out[3]) const {
    const int32_t n = q_pos + 1;
    if (window == 0 || n <= sinks + window) {
      out[0] = {0, n};
      return 1;
    }
    int k = 0;
    if (sinks > 0) out[k++] = {0, sinks};
    const int32_t c = cell(q_pos - window + 1);  // oldest kept non-sink position
    out[k++] = {c, sinks + window - c};
    if (c > sinks) out[k++] = {sinks, c - sinks};
    return k;
  }

  // Most tokens of a wave starting at position pos0 (see KvCache::max_wave).
  // All K/V of a wave are written before any of its queries attend, so a
  // later token must not overwrite a ring cell an earlier query still sees:
  // waves may fill the ring, but once it is full a token of position p
  // evicts p - W, which the query at p - 1 still needs — one token per wave
  // from then on.
  int32_t max_wave(int32_t pos0) const {
    if (window == 0) return INT32_MAX;
    return std::max(1, sinks + window - pos0);
  }

  // Cells holding tokens after n_past tokens.
  int32_t used(int32_t n_past) const { return std::min(n_past, n_cells); }
};

}  // namespace kvforge
