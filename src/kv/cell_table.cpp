#include "kv/cell_table.h"

#include <algorithm>

#include "util/error.h"

namespace kvforge {

CellTable::CellTable(int32_t n_lanes, int32_t n_cells)
    : n_cells_(n_cells), pos_((size_t)n_lanes * n_cells, -1), used_(n_lanes, 0) {}

int32_t CellTable::visible(int32_t lane, int32_t q_pos) const {
  const int32_t* p = positions(lane);
  return (int32_t)(std::upper_bound(p, p + used_[lane], q_pos) - p);
}

void CellTable::clear() { std::fill(used_.begin(), used_.end(), 0); }

int32_t CellTable::append(int32_t lane, int32_t pos) {
  int32_t& u = used_[lane];
  if (u == n_cells_) fail("KV cells: all {} cells of lane {} are in use", n_cells_, lane);
  int32_t* p = &pos_[(size_t)lane * n_cells_];
  if (u > 0 && pos <= p[u - 1]) fail("KV cells: position {} after {} (positions must increase)", pos, p[u - 1]);
  p[u] = pos;
  return u++;
}

CellDrop CellTable::plan_drop(int32_t lane, const std::vector<uint8_t>& drop) const {
  CellDrop d;
  const int32_t u = used_[lane];
  int32_t dst = 0;
  for (int32_t i = 0; i < u;) {
    if (i < (int32_t)drop.size() && drop[i]) {
      ++i;
      continue;
    }
    int32_t j = i;  // a run of kept cells [i, j)
    while (j < u && !(j < (int32_t)drop.size() && drop[j])) ++j;
    if (dst != i) d.moves.push_back({i, dst, j - i});
    dst += j - i;
    i = j;
  }
  d.used = dst;
  return d;
}

void CellTable::apply(int32_t lane, const CellDrop& d) {
  apply_moves(&pos_[(size_t)lane * n_cells_], d.moves);
  used_[lane] = d.used;
}

}  // namespace kvforge
