// AVX2 kernels for the interleaved x8 layouts (ops/weight_pack.h).
//
// One 8-lane f32 accumulator per (8-row group, token): lane i is row i. Per
// 32-element block the integer dot of each row is exact (int16/int32 lanes,
// no overflow: |q_w| <= 15 or 128, |q_a| <= 127), so the order in which the
// lanes are added up does not matter; then one f32 fma per block (and one
// more for the Q4_1 min term) into that row's lane. Every (row, token) thus
// follows one fixed chain over the blocks, whether the token runs in a tile
// of kT or alone: y[t][r] is independent of n_tok and of the thread split.
#include <immintrin.h>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge {

namespace {

constexpr int kT = 4;  // tokens per tile

// ---- Q4_1x8 ----------------------------------------------------------------
// Exact int32 dots of the 8 rows with one activation block, lane i = row i.
// w_lo[p]/w_hi[p]: nibbles of rows p (low 128 bits) and p+4 (high), elements
// 0..15 and 16..31. Bounds: maddubs pair <= 2*15*127 = 3810; lo+hi <= 7620;
// two phaddw levels <= 30480 < 32767, then madd widens to int32.
inline __m256i q4x8_dot(const __m256i w_lo[4], const __m256i w_hi[4], const int8_t* aq) {
  const __m256i a_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)aq));
  const __m256i a_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(aq + 16)));
  __m256i s[4];
  for (int p = 0; p < 4; ++p)
    s[p] = _mm256_add_epi16(_mm256_maddubs_epi16(w_lo[p], a_lo), _mm256_maddubs_epi16(w_hi[p], a_hi));
  // Per 128-bit lane: [row p partials x8] -> [r0 r0 r1 r1 r2 r2 r3 r3] pairs.
  const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(s[0], s[1]), _mm256_hadd_epi16(s[2], s[3]));
  return _mm256_madd_epi16(h, _mm256_set1_epi16(1));  // lanes: rows 0..3 | 4..7
}

template <int T>
void tile_q4_1x8(const BlockQ4_1x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                 int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ4_1x8& B = w[b];
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.d));
    const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.m));
    __m256i lo[4], hi[4];
    for (int p = 0; p < 4; ++p) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[p]);
      lo[p] = _mm256_and_si256(raw, m4);
      hi[p] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
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
// Signed weights: maddubs(|a|, sign(w, a)), pair sums <= 2*127*128 < 32767.
inline __m256i q8x8_dot(const BlockQ8_0x8& B, const int8_t* aq) {
  const __m256i a = _mm256_loadu_si256((const __m256i*)aq);
  const __m256i au = _mm256_sign_epi8(a, a);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s[8];
  for (int i = 0; i < 8; ++i) {
    const __m256i wq = _mm256_loadu_si256((const __m256i*)B.qs[i]);
    s[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(wq, a)), ones);
  }
  // hadd tree: per 128-bit lane [r0 r1 r2 r3] partial sums, then add lanes.
  const __m256i h03 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
  const __m256i h47 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(h03, h47, 0x20), _mm256_permute2x128_si256(h03, h47, 0x31));
}

template <int T>
void tile_q8_0x8(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                 int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[b].d));
    for (int t = 0; t < T; ++t) {
      const __m256 isum = _mm256_cvtepi32_ps(q8x8_dot(w[b], a[t][b].qs));
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

GemmFn gemm_kernel_packed_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_1: return tiling::gemm_x8<kT, BlockQ4_1x8, TileQ4_1>;
    case GgmlType::Q8_0: return tiling::gemm_x8<kT, BlockQ8_0x8, TileQ8_0>;
    default: return nullptr;
  }
}

}  // namespace kvforge
