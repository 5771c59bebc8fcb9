// AVX2 element-wise activations (scalar versions in activation.cpp).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "ops/simd_math_avx2.h"

namespace kvforge {

// gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i], exp from exp256_ps.
void swiglu_inplace_avx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp256_ps(_mm256_xor_ps(g, sign));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {  // the tail through the same vector code, so every element gets the same exp
    alignas(32) float g[8] = {0}, u[8] = {0};
    for (int64_t k = i; k < n; ++k) g[k - i] = gate[k], u[k - i] = up[k];
    swiglu_inplace_avx2(g, u, 8);
    for (int64_t k = i; k < n; ++k) gate[k] = g[k - i];
  }
}

}  // namespace kvforge
