#include "ops/rope.h"

#include <algorithm>
#include <cmath>

namespace kvforge {

namespace {

// The pair index at which a frequency turns n_turns times over n_ctx positions.
double yarn_corr_dim(double n_turns, int n_rot, double base, int n_ctx) {
  return n_rot * std::log(n_ctx / (n_turns * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

Rope::Rope(const RopeParams& p) : p_(p) {
  const int half = p.n_rot / 2;
  inv_freq_.resize(half);
  const bool yarn = p.yarn_factor > 1 && p.yarn_orig_ctx > 0;
  double lo = 0, hi = 0;
  if (yarn) {
    lo = std::max(0.0, std::floor(yarn_corr_dim(p.yarn_beta_fast, p.n_rot, p.freq_base, p.yarn_orig_ctx)));
    hi = std::min(p.n_rot - 1.0, std::ceil(yarn_corr_dim(p.yarn_beta_slow, p.n_rot, p.freq_base, p.yarn_orig_ctx)));
  }
  for (int i = 0; i < half; ++i) {
    double f = std::pow((double)p.freq_base, -2.0 * i / (double)p.n_rot);
    if (!p.freq_factors.empty()) f /= (double)p.freq_factors[i];
    if (yarn) {  // ramp 0: extrapolate (keep f), 1: interpolate (f / factor)
      const double ramp = std::clamp((i - lo) / std::max(0.001, hi - lo), 0.0, 1.0);
      f = f / p.yarn_factor * ramp + f * (1 - ramp);
    }
    inv_freq_[i] = f;
  }
}

void Rope::angles(int32_t pos, float* cs) const {
  for (int i = 0; i < p_.n_rot / 2; ++i) {
    const double angle = (double)pos * inv_freq_[i];
    cs[2 * i] = (float)std::cos(angle) * p_.attn_factor;
    cs[2 * i + 1] = (float)std::sin(angle) * p_.attn_factor;
  }
}

void Rope::apply(float* x, int n_heads, int head_dim, const float* cs) const {
  const int half = p_.n_rot / 2;
  const bool adjacent = p_.pairing == RopePairing::Adjacent;
  for (int h = 0; h < n_heads; ++h) {
    float* xh = x + (int64_t)h * head_dim;
    for (int i = 0; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const int a = adjacent ? 2 * i : i;
      const int b = adjacent ? 2 * i + 1 : i + half;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

void Rope::apply(float* x, int n_heads, int head_dim, int32_t pos) const {
  std::vector<float> cs(p_.n_rot);
  angles(pos, cs.data());
  apply(x, n_heads, head_dim, cs.data());
}

}  // namespace kvforge
