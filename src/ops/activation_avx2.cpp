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

// x[i] = v / (1 + exp(-2u)), u = sqrt(2/pi) (v + 0.044715 v^3): the tanh form
// of GELU rewritten as a sigmoid. Large |u| saturates cleanly: exp(-2u) -> 0
// gives v, exp(88) gives v / 1.6e38 -> 0.
void gelu_inplace_avx2(float* x, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 c = _mm256_set1_ps(-2.0f * 0.7978845608028654f);  // -2 sqrt(2/pi)
  const __m256 k = _mm256_set1_ps(0.044715f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(k, v), _mm256_mul_ps(v, v), v);  // v + 0.044715 v^3
    const __m256 e = exp256_ps(_mm256_mul_ps(c, inner));
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
  }
  if (i < n) {  // the tail through the same vector code
    alignas(32) float t[8] = {0};
    for (int64_t j = i; j < n; ++j) t[j - i] = x[j];
    gelu_inplace_avx2(t, 8);
    for (int64_t j = i; j < n; ++j) x[j] = t[j - i];
  }
}

}  // namespace kvforge
