#include "ops/rope.h"

#include <cmath>

namespace kvforge {

Rope::Rope(const RopeParams& p) : p_(p) {
  const int half = p.n_rot / 2;
  inv_freq_.resize(half);
  for (int i = 0; i < half; ++i) {
    double f = std::pow((double)p.freq_base, -2.0 * i / (double)p.n_rot);
    if (!p.freq_factors.empty()) f /= (double)p.freq_factors[i];
    inv_freq_[i] = f;
  }
}

void Rope::apply(float* x, int n_heads, int head_dim, int32_t pos) const {
  const int half = p_.n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = (double)pos * inv_freq_[i];
    const float c = (float)std::cos(angle), s = (float)std::sin(angle);
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + (int64_t)h * head_dim;
      const int a = p_.pairing == RopePairing::Adjacent ? 2 * i : i;
      const int b = p_.pairing == RopePairing::Adjacent ? 2 * i + 1 : i + half;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

}  // namespace kvforge
