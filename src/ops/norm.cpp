#include "ops/norm.h"

#include <algorithm>
#include <cmath>

namespace kvforge {

// Sums in double: the norms are a negligible share of the work, and the
// extra precision keeps us closest to the PyTorch reference.
// Each row's sum of squares is one chain of double adds in element order;
// up to 4 rows run their chains side by side (a batched decode step has a
// row per sequence), which hides the add latency without changing a bit.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  constexpr int kRows = 4;
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRows) {
    const int nr = (int)std::min<int64_t>(kRows, n_rows - r0);
    double ss[kRows] = {};
    if (nr == kRows) {
      const float *x0 = x + r0 * n, *x1 = x0 + n, *x2 = x1 + n, *x3 = x2 + n;
      for (int64_t i = 0; i < n; ++i) {
        ss[0] += (double)x0[i] * x0[i];
        ss[1] += (double)x1[i] * x1[i];
        ss[2] += (double)x2[i] * x2[i];
        ss[3] += (double)x3[i] * x3[i];
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        const float* xr = x + (r0 + j) * n;
        for (int64_t i = 0; i < n; ++i) ss[j] += (double)xr[i] * xr[i];
      }
    }
    for (int j = 0; j < nr; ++j) {
      const float* xr = x + (r0 + j) * n;
      float* yr = y + (r0 + j) * n;
      const float scale = (float)(1.0 / std::sqrt(ss[j] / (double)n + (double)eps));
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * w[i];
    }
  }
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += xr[i];
    const double mean = sum / (double)n;
    double var = 0;
    for (int64_t i = 0; i < n; ++i) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
    const float inv = (float)(1.0 / std::sqrt(var / (double)n + (double)eps));
    const float fmean = (float)mean;
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - fmean) * inv * w[i] + (b ? b[i] : 0.0f);
  }
}

}  // namespace kvforge
