#pragma once
// Row normalisations. Each row is reduced on its own, in a fixed order, so the
// result never depends on how many rows are processed together.
#include <cstdint>

namespace kvforge {

// y = x / sqrt(mean(x^2) + eps) * w          x, y: [n_rows][n]; w: [n]
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps);

// y = (x - mean) / sqrt(var + eps) * w + b    b may be null
void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n_rows, int64_t n, float eps);

}  // namespace kvforge
