#include "ops/norm.h"

#include <cmath>

namespace kvforge {

// Sums in double: the norms are a negligible share of the work, and the
// extra precision keeps us closest to the PyTorch reference.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
    const float scale = (float)(1.0 / std::sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * w[i];
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
