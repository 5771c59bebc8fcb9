// AVX-512 VNNI kernels for the interleaved x8 layouts (ops/weight_pack.h).
//
// Per (8-row group, block, token) the 8 exact int32 row dots come from 512-bit
// dpbusd (u8 x s8 -> int32, four products per lane) plus a fixed shuffle/add
// tree; then the f32 chain of matmul_packed_avx2.cpp: one 8-lane accumulator
// per (group, token), lane i = row i, one fma per block with d_w * d_a (and
// one with m_w * s_a for Q4_1). The integer dots are exact in both, so the
// results are bit-identical to the AVX2 packed kernels, and batch invariant
// for the same reason (one fixed chain per (row, token)).
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kT = 4;  // tokens per tile

// Lanes (0, 8, 1, 9, 2, 10, 3, 11) of v: where the reduction trees below leave
// the row sums, picked into row order in the low 256 bits.
inline __m256i pick_rows(__m512i v) {
  const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 11, 3, 10, 2, 9, 1, 8, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(idx, v));
}

// ---- Q4_1x8 ----------------------------------------------------------------
// q[v] (v = 0, 1) = qs[2v], qs[2v+1]: 128-bit lanes hold the 16 nibble bytes
// of rows 2v, 2v+4, 2v+1, 2v+5; low nibbles are elements 0..15, high ones
// 16..31. Weights 0..15 are unsigned already.
inline __m256i q4x8_dot(const __m512i lo[2], const __m512i hi[2], const int8_t* aq) {
  const __m512i a_lo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)aq));
  const __m512i a_hi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(aq + 16)));
  const __m512i zero = _mm512_setzero_si512();
  __m512i s[2];  // [v] 4 partial dots per 128-bit lane (one row per lane)
  for (int v = 0; v < 2; ++v) s[v] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo[v], a_lo), hi[v], a_hi);
  // Per 128-bit lane with rows A (from s[0]) and B (s[1]):
  // [A0+A2, B0+B2, A1+A3, B1+B3], then + its high 64 bits -> [A, B, ., .].
  __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
  u = _mm512_add_epi32(u, _mm512_unpackhi_epi64(u, u));
  // Lanes 0/1: rows 0, 2; 4/5: rows 4, 6; 8/9: rows 1, 3; 12/13: rows 5, 7.
  const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 5, 12, 4, 9, 1, 8, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(idx, u));
}

template <int T>
void tile_q4_1x8(const BlockQ4_1x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                 int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ4_1x8& B = w[b];
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.d));
    const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.m));
    __m512i lo[2], hi[2];
    for (int v = 0; v < 2; ++v) {
      const __m512i raw = _mm512_loadu_si512((const void*)B.qs[2 * v]);
      lo[v] = _mm512_and_si512(raw, m4);
      hi[v] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    }
    for (int t = 0; t < T; ++t) {
      const __m256 isum = _mm256_cvtepi32_ps(q4x8_dot(lo, hi, a[t][b].qs));
      acc[t] = _mm256_fmadd_ps(isum, _mm256_mul_ps(dw, _mm256_set1_ps(a[t][b].d)), acc[t]);
      acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[t][b].s), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}

// ---- Q8_0x8 ----------------------------------------------------------------
// wq[v] = rows 2v, 2v+1 (256 bits each) as q + 128 (unsigned); the activation
// block sits in both halves. Each dot starts at -128 * (sum of its four
// activation bytes). Bounds: |lane| <= 4 * 255 * 127, exact in int32.
inline __m256i q8x8_dot(const __m512i wq[4], const int8_t* aq) {
  const __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)aq));
  const __m512i zero = _mm512_setzero_si512();
  const __m512i base = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8((char)0x80), a));
  __m512i s[4];  // [v] 8 partial dots of row 2v (low half), 8 of row 2v+1
  for (int v = 0; v < 4; ++v) s[v] = _mm512_dpbusd_epi32(base, wq[v], a);
  // Per 128-bit lane: [A0+A2, B0+B2, A1+A3, B1+B3] for pairs (s0, s1), (s2, s3),
  // then the 64-bit halves of both added: [A, B, C, D] partial row sums.
  const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
  const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
  __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
  // 128-bit lanes 0, 1 hold halves of rows 0, 2, 4, 6; lanes 2, 3 of rows 1,
  // 3, 5, 7: add each pair of lanes (lanes 0 and 2 get the sums).
  u = _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, 0xB1));
  return pick_rows(u);
}

template <int T>
void tile_q8_0x8(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                 int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m512i bias = _mm512_set1_epi8((char)0x80);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[b].d));
    __m512i wq[4];
    for (int v = 0; v < 4; ++v) wq[v] = _mm512_xor_si512(_mm512_loadu_si512((const void*)w[b].qs[2 * v]), bias);
    for (int t = 0; t < T; ++t) {
      const __m256 isum = _mm256_cvtepi32_ps(q8x8_dot(wq, a[t][b].qs));
      acc[t] = _mm256_fmadd_ps(isum, _mm256_mul_ps(dw, _mm256_set1_ps(a[t][b].d)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}


template <int T>
struct TileQ4_1 {
  static void run(const BlockQ4_1x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                  int64_t r, float* y) {
    tile_q4_1x8<T>(w, nb, xa, xs, t, rows, r, y);
  }
};
template <int T>
struct TileQ8_0 {
  static void run(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                  int64_t r, float* y) {
    tile_q8_0x8<T>(w, nb, xa, xs, t, rows, r, y);
  }
};

}  // namespace

GemmFn gemm_kernel_packed_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_1: return tiling::gemm_x8<kT, BlockQ4_1x8, TileQ4_1>;
    case GgmlType::Q8_0: return tiling::gemm_x8<kT, BlockQ8_0x8, TileQ8_0>;
    default: return nullptr;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
