#include "ops/activation.h"

#include <cmath>

#include "backend/cpu_features.h"

namespace kvforge {

void swiglu_inplace_avx2(float* gate, const float* up, int64_t n);  // activation_avx2.cpp

void swiglu_inplace(float* gate, const float* up, int64_t n) {
  if (simd_level() >= SimdLevel::AVX2) return swiglu_inplace_avx2(gate, up, n);
  swiglu_inplace_ref(gate, up, n);
}

void swiglu_inplace_ref(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_inplace_avx2(float* x, int64_t n);  // activation_avx2.cpp

void gelu_inplace(float* x, int64_t n) {
  if (simd_level() >= SimdLevel::AVX2) return gelu_inplace_avx2(x, n);
  gelu_inplace_ref(x, n);
}

void gelu_inplace_ref(float* x, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void mul_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= x[i];
}

}  // namespace kvforge
