// AVX-512 VNNI kernels for the K-quants (Q4_K, Q5_K, Q6_K) on Q8_K
// activations, plain layout.
//
// They keep the f32 chain of the AVX2 K-quant kernels (matmul_avx2.cpp):
// per (row, token) and super-block, 8 int32 lanes where lane j holds
//   sum over the 32-element groups g of scale(g, j) * (dot of elements
//   4j..4j+3 of g)
// (Q6_K: scale(g, j) is the 16-element sub-block scale, and lane 0 also
// holds -32 * sum_s scale_s * bsums_s), converted to f32 and fma'd with
// d_w * d_a into an 8-lane accumulator; Q4_K/Q5_K keep the
// dmin * d_a * sum_j m_j bsums term in a chain of its own. Integer sums are
// exact, so any way of computing the same lane values gives the bits of the
// AVX2 kernels: an AVX-512 machine and an AVX2 one agree.
//
// The lanes here: one vpdpbusd (u8 weights x s8 activations) over 64 bytes =
// two 32-element groups gives 16 int32 lanes, the 4-byte dots of both
// groups; one vpdpwssd multiplies each lane by its group's scale and adds it
// in. That product is exact because |dot| <= 4 * 63 * 127 < 2^15 sits in the
// low 16 bits of the lane and the scale operand has 0 in its high 16 bits:
// lo * scale + hi * 0. At the end of a super-block the two 256-bit halves
// are added: lane j of the sum is the AVX2 lane j.
//
// Tiles of 4 rows x 2 tokens reuse the unpacked weights across the 2 tokens
// and the activations across the 4 rows; the per-row offset terms (Q4_K
// mins, Q6_K -32 correction) of the 4 rows are computed together, one
// 128-bit lane per row. Every (row, token) still runs its own fixed
// sequence on its own accumulators whatever tile it sits in, so the results
// are batch invariant. Compiled natively and emulated (backend/simd_avx512.h).
#include <type_traits>

#include "backend/simd_avx512.h"

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 2;  // tokens per tile (R*T int accumulators + R*T f32 ones + unpacked weights in 32 registers)
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

// Sum of each 128-bit lane's four int32 (lane r = row r), into int32 lane r.
inline __m128i sum_lanes4(__m512i v) {
  const __m512i swap64 = _mm512_setr_epi32(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  const __m512i swap32 = _mm512_setr_epi32(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  v = _mm512_add_epi32(v, _mm512_permutexvar_epi32(swap64, v));
  v = _mm512_add_epi32(v, _mm512_permutexvar_epi32(swap32, v));
  const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, v));
}

// The 16 int32 lanes of v added into 8 (low half + high half).
inline __m256i fold_halves(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// 8 bytes per row for 4 rows (zeros past R) -> 32 int16, row r in 128-bit
// lane r. Sign-extending: the Q4_K mins (0..63) read the same either way.
inline __m512i rows_epi16(const uint64_t b[4]) {
  return _mm512_cvtepi8_epi16(_mm256_setr_epi64x((long long)b[0], (long long)b[1], (long long)b[2], (long long)b[3]));
}

// ---- Q4_K, Q5_K ---------------------------------------------------------------
// The six-bit scales and mins of the 8 sub-blocks, byte j = sub-block j (what
// k4_scale_min in ops/ggml_types.h gives, four bytes at a time; not called:
// shared inlines must not be compiled here, see backend/simd_avx512.h).
// scales[0..3]: sc 0-3 in the low six bits; [4..7]: m 0-3 likewise;
// [8..11]: sc 4-7 (low nibble) and m 4-7 (high nibble), whose top two bits
// are the top bits of [0..3] (sc) and [4..7] (m).
inline void k4_scales(const uint8_t* s, uint64_t* sc, uint64_t* mn) {
  uint32_t u0, u1, u2;
  __builtin_memcpy(&u0, s, 4);
  __builtin_memcpy(&u1, s + 4, 4);
  __builtin_memcpy(&u2, s + 8, 4);
  const uint32_t lo6 = 0x3f3f3f3f, lo4 = 0x0f0f0f0f, bits45 = 0x30303030;
  const uint32_t sc_hi = (u2 & lo4) | ((u0 >> 2) & bits45);
  const uint32_t mn_hi = ((u2 >> 4) & lo4) | ((u1 >> 2) & bits45);
  *sc = (u0 & lo6) | (uint64_t)sc_hi << 32;
  *mn = (u1 & lo6) | (uint64_t)mn_hi << 32;
}

// Groups are fed in pairs: qs bytes 64k..64k+63 hold groups 4k, 4k+1 (low
// and high nibbles of the first 32 bytes) and 4k+2, 4k+3 (the next 32), so
// the low nibbles of the 64 bytes are [group 4k | group 4k+2] and the high
// ones [4k+1 | 4k+3] (pair (k, h) = [4k+h | 4k+h+2]); the activations are
// gathered to match.
template <bool kQ5, int R, int T>
void tile_k4(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  const int64_t nb = W.cols / QK_K;
  const Block* w[R];
  const BlockQ8K* a[T];
  for (int r = 0; r < R; ++r) w[r] = (const Block*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];  // the AVX2 accumulators
  __m128 accm[T];    // the AVX2 min-term chains, lane r = row r (lane-wise fma == scalar fma)
  for (int t = 0; t < T; ++t) {
    accm[t] = _mm_setzero_ps();
    for (int r = 0; r < R; ++r) acc[r][t] = _mm256_setzero_ps();
  }
  const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
  // Lane i of pair (k, h) takes the scale of group 4k + h (i < 8) or 4k + h + 2.
  const __m512i pair_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i scl[R];             // [R] 16 int32: lane j < 8 = scale of sub-block j (upper half repeats)
    __m512i qh2[R];             // [R] Q5_K: qh[0..31] | qh[0..31] >> 2 (bit 4k+h: high bit of pair (k, h))
    uint64_t mn[4] = {0, 0, 0, 0};  // [4] rows' 8 mins, one per byte
    __m128i dh = _mm_setzero_si128();  // fp16 d of row r in lane r, dmin in lane 4 + r
    for (int r = 0; r < R; ++r) {
      uint64_t sc;
      k4_scales(w[r][b].scales, &sc, &mn[r]);
      scl[r] = _mm512_broadcast_i64x4(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
      if constexpr (kQ5) {
        const __m256i qh = _mm256_loadu_si256((const __m256i*)w[r][b].qh);
        qh2[r] = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
      }
      dh = insert16(dh, w[r][b].d, r);
      dh = insert16(dh, w[r][b].dmin, 4 + r);
    }
    const __m256 dw = _mm256_cvtph_ps(dh);
    const __m128 d4 = _mm256_castps256_ps128(dw), dmin4 = _mm256_extractf128_ps(dw, 1);
    const __m512i mins = rows_epi16(mn);  // row r's mins in 128-bit lane r
    __m512i isum[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) isum[r][t] = zero;
    for (int k = 0; k < 2; ++k) {
      __m512i av[T][2];  // [T][h] activations of pair (k, h)
      for (int t = 0; t < T; ++t) {
        const int8_t* q = a[t][b].qs + 128 * k;
        for (int h = 0; h < 2; ++h)
          av[t][h] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(q + 32 * h))),
                                        _mm256_loadu_si256((const __m256i*)(q + 32 * h + 64)), 1);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i raw = _mm512_loadu_si512((const void*)(w[r][b].qs + 64 * k));
        __m512i q[2] = {_mm512_and_si512(raw, m4), _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4)};  // [h]
        for (int h = 0; h < 2; ++h) {
          if constexpr (kQ5) {
            const __mmask64 hi = _mm512_test_epi8_mask(qh2[r], _mm512_set1_epi8((char)(1 << (4 * k + h))));
            q[h] = _mm512_mask_add_epi8(q[h], hi, q[h], b4);
          }
          const __m512i sc = _mm512_permutexvar_epi32(_mm512_add_epi32(pair_idx, _mm512_set1_epi32(4 * k + h)), scl[r]);
          for (int t = 0; t < T; ++t)
            isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_dpbusd_epi32(zero, q[h], av[t][h]), sc);
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      // sum_j m_j (bsums[2j] + bsums[2j+1]) of the 4 rows at once.
      const __m256i pairs32 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a[t][b].bsums), _mm256_set1_epi16(1));
      const __m128i pairs = _mm_packs_epi32(_mm256_castsi256_si128(pairs32), _mm256_extracti128_si256(pairs32, 1));
      // vpdpwssd from 0 is vpmaddwd (SIMDe 0.7.4's _mm512_madd_epi16 alias is broken).
      const __m128i bsum = sum_lanes4(_mm512_dpwssd_epi32(zero, mins, _mm512_broadcast_i32x4(pairs)));  // |pair| <= 32 * 127
      const __m128 ad = _mm_set1_ps(a[t][b].d);
      alignas(16) float dd[4];  // [R] d_w * d_a
      _mm_store_ps(dd, _mm_mul_ps(d4, ad));
      for (int r = 0; r < R; ++r)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold_halves(isum[r][t])), _mm256_broadcast_ss(&dd[r]), acc[r][t]);
      accm[t] = _mm_fmadd_ps(_mm_mul_ps(dmin4, ad), _mm_cvtepi32_ps(_mm_sub_epi32(_mm_setzero_si128(), bsum)), accm[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float m[4];  // [R] min terms
    _mm_store_ps(m, accm[t]);
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = hsum256_ps(acc[r][t]) + m[r];
  }
}

// ---- Q6_K ---------------------------------------------------------------------
// Element 128h + 32g + l (layout as in matmul_avx2.cpp): low four bits from
// ql[64h + 32(g&1) + l] (low nibble for g < 2, high for g >= 2), top two
// from qh[32h + l] >> 2g; weight q - 32, q in 0..63 fed to dpbusd as is.
// Groups go in pairs (h, p) = [g = 2p | g = 2p + 1], 64 contiguous
// activations; the 64 ql bytes of half h give pair p = 0 (low nibbles) and
// p = 1 (high), and qh | qh >> 2 their top bits (bits 0-1 resp. 4-5).
// Lane i of pair (h, p) covers elements 4(i%8).. of group 2p + i/8, whose
// scale is scales[8h + 4p + i/4].
template <int R, int T>
void tile_q6k(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockQ6_K* w[R];
  const BlockQ8K* a[T];
  for (int r = 0; r < R; ++r) w[r] = (const BlockQ6_K*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];  // the AVX2 accumulators
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
  const __m512i quad_idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i scl[R];  // [R] 16 int32: lane s = scales[s], zero-extended from 16 bits (for vpdpwssd)
    uint64_t s_lo[4] = {0, 0, 0, 0}, s_hi[4] = {0, 0, 0, 0};  // [4] rows' scales 0-7 and 8-15
    __m128i dh = _mm_setzero_si128();  // fp16 d of row r in lane r
    for (int r = 0; r < R; ++r) {
      const int8_t* s = w[r][b].scales;
      scl[r] = cvtepu16_epi32_512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)s)));
      __builtin_memcpy(&s_lo[r], s, 8);
      __builtin_memcpy(&s_hi[r], s + 8, 8);
      dh = insert16(dh, w[r][b].d, r);
    }
    const __m128 d4 = _mm_cvtph_ps(dh);
    const __m512i sc_lo = rows_epi16(s_lo), sc_hi = rows_epi16(s_hi);  // row r's scales in 128-bit lane r
    __m512i isum[R][T];
    for (int t = 0; t < T; ++t) {
      // -32 * sum_s scales_s bsums_s of the 4 rows, put in lane 0 as AVX2 does.
      const __m256i bs = _mm256_loadu_si256((const __m256i*)a[t][b].bsums);
      __m512i c = _mm512_dpwssd_epi32(zero, sc_lo, _mm512_broadcast_i32x4(_mm256_castsi256_si128(bs)));
      c = _mm512_dpwssd_epi32(c, sc_hi, _mm512_broadcast_i32x4(_mm256_extracti128_si256(bs, 1)));
      const __m128i corr = _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(sum_lanes4(c), 5));
      const __m512i corr16 = _mm512_broadcast_i32x4(corr);
      for (int r = 0; r < R; ++r) isum[r][t] = _mm512_maskz_permutexvar_epi32(1, _mm512_set1_epi32(r), corr16);
    }
    for (int h = 0; h < 2; ++h) {
      for (int p = 0; p < 2; ++p) {
        __m512i av[T];  // [T] activations 128h + 64p .. +63
        for (int t = 0; t < T; ++t) av[t] = _mm512_loadu_si512((const void*)(a[t][b].qs + 128 * h + 64 * p));
        const __m512i sidx = _mm512_add_epi32(quad_idx, _mm512_set1_epi32(8 * h + 4 * p));
        for (int r = 0; r < R; ++r) {
          const BlockQ6_K& B = w[r][b];
          const __m512i ql = _mm512_loadu_si512((const void*)(B.ql + 64 * h));
          const __m256i qh = _mm256_loadu_si256((const __m256i*)(B.qh + 32 * h));
          const __m512i qhx = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
          const __m512i q = p == 0 ? _mm512_or_si512(_mm512_and_si512(ql, m4),
                                                     _mm512_and_si512(_mm512_slli_epi16(qhx, 4), m30))
                                   : _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                     _mm512_and_si512(qhx, m30));
          const __m512i sc = _mm512_permutexvar_epi32(sidx, scl[r]);
          for (int t = 0; t < T; ++t)
            isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_dpbusd_epi32(zero, q, av[t]), sc);
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      alignas(16) float dd[4];  // [R] d_w * d_a
      _mm_store_ps(dd, _mm_mul_ps(d4, _mm_set1_ps(a[t][b].d)));
      for (int r = 0; r < R; ++r)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold_halves(isum[r][t])), _mm256_broadcast_ss(&dd[r]), acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = hsum256_ps(acc[r][t]);
}

template <class WT, int R, int T>
struct TileK4 {  // WT: std::true_type for Q5_K
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_k4<WT::value, R, T>(W, r, xa, xs, t, y);
  }
};
template <class WT, int R, int T>
struct TileK6 {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_q6k<R, T>(W, r, xa, xs, t, y);
  }
};

}  // namespace

GemmFn gemm_kernel_kquant_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_K: return Gemm<TileK4, std::false_type>::gemm;
    case GgmlType::Q5_K: return Gemm<TileK4, std::true_type>::gemm;
    case GgmlType::Q6_K: return Gemm<TileK6, void>::gemm;
    default: return nullptr;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
