#pragma once
// Which tokens H2O and SnapKV keep, as pure functions of one lane's cells
// (positions in increasing order, cell_table.h) and their scores, so that
// the cache (evict_cache.cpp) and the tests' slow references meet here.
#include <cstdint>
#include <vector>

namespace kvforge {

// H2O: the cell to drop when position new_pos arrives at a full lane.
// pos, score: [used] positions and accumulated attention. The `recent` last
// positions (new_pos - recent + 1 .. new_pos) are never dropped; of the
// others the lowest score goes, the oldest on a tie. -1 when none may go.
int32_t h2o_victim(const int32_t* pos, const float* score, int32_t used, int32_t new_pos, int32_t recent);

// SnapKV: drop flags [used] (1 = drop) that keep `keep` cells: the last
// `window` cells and the keep - window earlier ("prefix") cells with the
// largest pooled score, the lower cell on a tie. score: [used] votes of the
// window's queries; pooled = max over the prefix cells within pool / 2 of a
// cell (a centred max-pool that sees no window cell, as SnapKV's
// max_pool1d over the prefix with padding pool / 2). Needs used > keep > window.
std::vector<uint8_t> snapkv_drop(const float* score, int32_t used, int32_t keep, int32_t window, int32_t pool);

}  // namespace kvforge
