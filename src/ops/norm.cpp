#include "ops/norm.h"

#include <algorithm>
#include <cmath>

namespace kvforge {

// Sums in double: the norms are a negligible share of the work, and the
// extra precision keeps us closest to the PyTorch reference.
// Each row's sum of squares runs in kLanes double partial sums (element i
// into partial i % kLanes), added up in a fixed tree at the end: the order
// depends only on the row length, never on the number of rows, and the
// independent partials (which the compiler may keep in vector registers, no
// reassociation needed) hide the add latency that one chain of 576 double
// adds paid per row (~1 us per norm of a decode step).
namespace {
constexpr int kLanes = 8;

double sum_squares(const float* x, int64_t n) {
  double s[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) s[j] += (double)x[i + j] * x[i + j];
  for (int j = 0; i < n; ++i, ++j) s[j] += (double)x[i] * x[i];
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}
}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    const float scale = (float)(1.0 / std::sqrt(sum_squares(xr, n) / (double)n + (double)eps));
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
