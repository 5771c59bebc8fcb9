// AVX2 activation quantizers; bit-identical to quantize_act_*_ref: the max of
// |x| is exact in any order, d and 1/d are computed as scalars the same way,
// and _mm256_round_ps(.., NEAREST) is round-half-even like nearbyint.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "ops/quantize.h"
#include "ops/simd_math_avx2.h"

namespace kvforge {

namespace {

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Rounds 32 floats (already scaled) to int8 in order; returns the int32 sums
// of the 32 values (lanes to be summed).
inline __m256i round_pack32(__m256 v0, __m256 v1, __m256 v2, __m256 v3, int8_t* out, __m256i* sum) {
  const int R = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(v0, R));
  __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(v1, R));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(v2, R));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(v3, R));
  *sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
  // packs work per 128-bit lane; the final permute restores element order.
  __m256i p01 = _mm256_packs_epi32(i0, i1);
  __m256i p23 = _mm256_packs_epi32(i2, i3);
  __m256i p = _mm256_packs_epi16(p01, p23);
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256((__m256i*)out, p);
  return p;
}

// One 32-element block to int8 at scale d = max|x| / 127 (what the Q8A
// activations and Q8_0 rows share): writes qs, the lane sums to *sum, and
// returns d.
inline float quantize_block32(const float* x, int8_t* qs, __m256i* sum) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
  const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
  const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
  const float d = hmax256_ps(m) / 127.0f;
  const __m256 vid = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
  round_pack32(_mm256_mul_ps(v0, vid), _mm256_mul_ps(v1, vid), _mm256_mul_ps(v2, vid), _mm256_mul_ps(v3, vid), qs,
               sum);
  return d;
}

}  // namespace

void quantize_act_q8a_avx2(const float* x, BlockQ8A* y, int64_t n) {
  for (int64_t b = 0; b < n / QK; ++b, x += QK) {
    __m256i sum;
    const float d = quantize_block32(x, y[b].qs, &sum);
    y[b].d = d;
    y[b].s = d * (float)hsum_epi32(sum);
  }
}

void quantize_act_q8k_avx2(const float* x, BlockQ8K* y, int64_t n) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < QK_K; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    const float amax = hmax256_ps(m);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < QK_K; i += 32) {
      __m256i sum;
      __m256i p = round_pack32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vid), _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vid),
                               _mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vid),
                               _mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vid), y[b].qs + i, &sum);
      // bsums over 16-element halves: sign-extend each 16-byte half and sum.
      __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(p));
      __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(p, 1));
      const __m256i ones = _mm256_set1_epi16(1);
      y[b].bsums[i / 16] = (int16_t)hsum_epi32(_mm256_madd_epi16(lo, ones));
      y[b].bsums[i / 16 + 1] = (int16_t)hsum_epi32(_mm256_madd_epi16(hi, ones));
    }
    y[b].d = d;
  }
}

// Stored-format row quantizers (quantize_row for F16, Q8_0, Q4_0: K/V cache
// writes), bit-identical to the scalar ones in quantize.cpp: F16C's
// round-to-nearest-even conversion is fp32_to_fp16's rounding; the scales
// are scalars computed the same way; no multiply-add is fused.
void quantize_row_f16_avx2(const float* x, fp16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

void quantize_row_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK) {
    __m256i sum;
    alignas(32) int8_t qs[QK];
    const float d = quantize_block32(x, qs, &sum);
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    std::memcpy(y[b].qs, qs, QK);
  }
}

void quantize_row_q4_0_avx2(const float* x, BlockQ4_0* y, int64_t nb) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < nb; ++b, x += QK) {
    __m256 v[4];
    for (int u = 0; u < 4; ++u) v[u] = _mm256_loadu_ps(x + 8 * u);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
                                   _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
    const float amax = hmax256_ps(m);
    // The scalar code keeps the first element of largest magnitude (0 if all are 0).
    float mx = 0;
    if (amax > 0) {
      const __m256 va = _mm256_set1_ps(amax);
      uint32_t mask = 0;
      for (int u = 0; u < 4; ++u)
        mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v[u], absmask), va, _CMP_EQ_OQ)) << (8 * u);
      mx = x[__builtin_ctz(mask)];
    }
    const float d = mx / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15);
    __m256i q[4];
    for (int u = 0; u < 4; ++u)  // min(15, (int)(x * id + 8.5f)): truncation, then clamp
      q[u] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[u], vid), half)), fifteen);
    // int16 in element order: packs works per 128-bit lane, the permute restores order.
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);  // elements 0..15
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8);  // elements 16..31
    const __m256i c = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128((__m128i*)y[b].qs, bytes);
  }
}

}  // namespace kvforge
