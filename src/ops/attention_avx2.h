#pragma once
// Pieces shared by the AVX2 chunk kernels of the fused attention
// (attention_avx2.cpp: f32/f16 rows, attention_quant_avx2.cpp: q8/q4 rows)
// and the AVX-512 one (attention_avx512.cpp). AVX2 intrinsics, internal
// linkage (see ops/simd_math_avx2.h).
#include <immintrin.h>

#include "ops/attention.h"
#include "ops/simd_math_avx2.h"

namespace kvforge {
namespace {

// Online-softmax update of one query head for one tile. s: kAttnTile scaled
// scores, 32-byte aligned, padded with -inf past the tile's rows; they are
// replaced by the probabilities exp(s - m_new). m, l: the running max and
// denominator, updated. Returns corr = exp(m_old - m_new), the factor the
// running sum of V must be scaled by. Fixed order: depends only on s, m, l.
inline float online_softmax_tile_avx2(float* s, float& m, float& l) {
  __m256 mx = _mm256_load_ps(s);
  for (int j = 8; j < kAttnTile; j += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(s + j));
  const float tile_max = hmax256_ps(mx), m_new = m < tile_max ? tile_max : m;  // std::max, see ops/attention_chunk_x86.h
  const float corr = _mm_cvtss_f32(_mm256_castps256_ps128(exp256_ps(_mm256_set1_ps(m - m_new))));
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int j = 0; j < kAttnTile; j += 8) {
    const __m256 p = exp256_ps(_mm256_sub_ps(_mm256_load_ps(s + j), vm));
    _mm256_store_ps(s + j, p);
    sum = _mm256_add_ps(sum, p);
  }
  l = l * corr + hsum256_ps(sum);
  m = m_new;
  return corr;
}

}  // namespace
}  // namespace kvforge
