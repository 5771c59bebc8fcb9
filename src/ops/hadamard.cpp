#include "ops/hadamard.h"

#include <cmath>

namespace kvforge {

int hadamard_block(int n) { return n & -n; }

void hadamard_rotate(float* x, int n, int b) {
  const float norm = 1.0f / std::sqrt((float)b);
  for (float* blk = x; blk < x + n; blk += b) {
    // In-place butterflies, O(b log b); fixed order, so the result depends
    // only on the row.
    for (int h = 1; h < b; h *= 2)
      for (int i = 0; i < b; i += 2 * h)
        for (int j = i; j < i + h; ++j) {
          const float a = blk[j], c = blk[j + h];
          blk[j] = a + c;
          blk[j + h] = a - c;
        }
    for (int i = 0; i < b; ++i) blk[i] *= norm;
  }
}

}  // namespace kvforge
