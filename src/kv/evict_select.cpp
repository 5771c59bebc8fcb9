#include "kv/evict_select.h"

#include <algorithm>
#include <numeric>

namespace kvforge {

int32_t h2o_victim(const int32_t* pos, const float* score, int32_t used, int32_t new_pos, int32_t recent) {
  int32_t best = -1;
  for (int32_t i = 0; i < used && pos[i] <= new_pos - recent; ++i)  // positions increase: candidates come first
    if (best < 0 || score[i] < score[best]) best = i;
  return best;
}

std::vector<uint8_t> snapkv_drop(const float* score, int32_t used, int32_t keep, int32_t window, int32_t pool) {
  const int32_t prefix = used - window, half = pool / 2;
  std::vector<float> pooled(prefix);  // [prefix]
  for (int32_t i = 0; i < prefix; ++i) {
    const int32_t a = std::max(0, i - half), b = std::min(prefix, i + half + 1);
    pooled[i] = *std::max_element(score + a, score + b);
  }
  std::vector<int32_t> order(prefix);  // prefix cells, best first
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return pooled[a] > pooled[b]; });
  std::vector<uint8_t> drop(used, 1);
  for (int32_t i = 0; i < keep - window; ++i) drop[order[i]] = 0;
  std::fill(drop.begin() + prefix, drop.end(), 0);
  return drop;
}

}  // namespace kvforge
