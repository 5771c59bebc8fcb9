#pragma once
// Vector math for AVX2+FMA translation units (*_avx2.cpp, and the
// AVX-512 ones, which also have AVX2). Internal linkage: every including file
// keeps its own copy, built with its own flags, so the linker can never hand
// an AVX-512 copy to an AVX2 caller (see backend/simd_avx512.h).
#include <immintrin.h>

namespace kvforge {
namespace {

// exp(x) for 8 floats, within ~1 ulp for x in [-87, 88] (relative error of
// the degree-7 Taylor polynomial on |r| <= ln2/2 is ~1e-9, below f32's half
// ulp; the rest is the rounding of a few fmas). Below -87.3 it returns 0
// (no denormals), above 88 it saturates at exp(88). Deterministic: the same
// input always gives the same output, whatever the lane.
inline __m256 exp256_ps(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 is_zero = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);  // also catches -inf
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
  // x = n ln2 + r, |r| <= ln2/2, with ln2 split in a hi part exact in f32.
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  // e^r = sum r^k / k!, k <= 7 (Horner).
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n by building the exponent field (n in [-126, 127] after the clamps).
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(is_zero, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

inline float hsum256_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax256_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace
}  // namespace kvforge
