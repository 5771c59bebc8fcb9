// AVX-512 VNNI kernels for Q2_K, Q3_K and IQ4_XS on Q8_K activations, plain
// layout.
//
// Same contract as matmul_lowbit_avx2.cpp: per (row, token) and super-block
// the exact int32 sums of the scalar reference (A, and Q2_K's B), then the
// reference's float steps blk = d_a * (d * A - dmin * B), s += blk. Only
// the way the integers are summed differs (exact either way), so the results
// are the bits of the AVX2 kernels and of dot_q2_k / dot_q3_k / dot_iq4_xs.
//
// One vpdpbusd (u8 weights x s8 activations) covers 64 elements = two
// 32-element groups, 16 int32 lanes of 4-element dots; the scale of each
// lane's sub-block is applied with vpdpwssd (Q2_K, Q3_K: |dot| < 2^15 sits
// in the low 16 bits, the scale lane is zero-extended from 16 bits, so
// lo * scale + hi * 0) or vpmulld (IQ4_XS, whose dots reach 4 * 127^2).
// Tiles of 4 rows x 2 tokens reuse the unpacked weights across the tokens.
// Compiled natively and emulated (backend/simd_avx512.h).
#include <type_traits>

#include "backend/simd_avx512.h"

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 2;  // tokens per tile
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

inline int hsum512_epi32(__m512i v) {
  __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// sum_s bsums[s] * v[s] over the 16 sub-blocks (v: 16 int16).
inline int bsum_dot(const BlockQ8K& a, __m256i v) {
  __m256i p = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), v);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float h2f(fp16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// v, rounded to f32 where it stands (no fma across it; see matmul_lowbit_avx2.cpp).
inline float rounded(float v) {
  asm("" : "+x"(v));
  return v;
}

// 64 activations of the group pair (g, g + 4): elements 32g.. and 128 + 32g..
inline __m512i act_pair(const BlockQ8K& a, int g) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(a.qs + 32 * g))),
                            _mm256_loadu_si256((const __m256i*)(a.qs + 128 + 32 * g)), 1);
}

// Lane i of pair (g, g + 4) covers sub-block 2g + (i/4)%2 (+8 for i >= 8).
inline __m512i pair_scale_idx(int g) {
  return _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 8, 8, 8, 8, 9, 9, 9, 9), _mm512_set1_epi32(2 * g));
}

// ---- Q2_K, Q3_K ---------------------------------------------------------------
// The 64 qs bytes are [half 0 | half 1], so (qs >> 2g) & 3 is the pair
// (g, g + 4) of groups. Q3_K adds 4 where bit g (half 0) or g + 4 (half 1)
// of hmask[l] is set, giving u in 0..7 (weight u - 4, the -4 applied as
// -4 * sum_s scale_s * bsums_s).
template <bool kQ3, int R, int T>
void tile_k23(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  const int64_t nb = W.cols / QK_K;
  const size_t bs = kQ3 ? sizeof(BlockQ3_K) : sizeof(BlockQ2_K);
  const uint8_t* w[R];
  const BlockQ8K* a[T];
  for (int r = 0; r < R; ++r) w[r] = W.row(r0 + r);
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  float acc[R][T] = {};
  const __m512i zero = _mm512_setzero_si512(), m2 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i raw[R], scl[R], hm[R];  // [R] qs; 16 scales (zero-extended int16 in int32 lanes); Q3_K hmask twice
    __m256i sc16[R];                // [R] 16 int16: Q2_K mins, Q3_K scales (for the bsums terms)
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * bs;
      if constexpr (kQ3) {
        const BlockQ3_K& B = *(const BlockQ3_K*)blk;
        raw[r] = _mm512_loadu_si512((const void*)B.qs);
        hm[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)B.hmask));
        alignas(32) int16_t s[16];  // [sub-block] scale - 32 (q3k_scale in ops/ggml_types.h)
        for (int k = 0; k < 16; ++k)
          s[k] = (int16_t)((((B.scales[k % 8] >> (4 * (k / 8))) & 15) |
                            (((B.scales[8 + k % 4] >> (2 * (k / 4))) & 3) << 4)) - 32);
        sc16[r] = _mm256_load_si256((const __m256i*)s);
        scl[r] = cvtepu16_epi32_512(sc16[r]);
      } else {
        const BlockQ2_K& B = *(const BlockQ2_K*)blk;
        raw[r] = _mm512_loadu_si512((const void*)B.qs);
        const __m128i sc = _mm_loadu_si128((const __m128i*)B.scales);
        scl[r] = cvtepu16_epi32_512(_mm256_cvtepu8_epi16(_mm_and_si128(sc, _mm_set1_epi8(15))));
        sc16[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
      }
    }
    __m512i isum[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) isum[r][t] = zero;
    for (int g = 0; g < 4; ++g) {
      __m512i av[T];  // [T]
      for (int t = 0; t < T; ++t) av[t] = act_pair(a[t][b], g);
      const __m512i idx = pair_scale_idx(g);
      const __m512i hbit = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)(1 << g))),
                                              _mm256_set1_epi8((char)(16 << g)), 1);
      for (int r = 0; r < R; ++r) {
        __m512i q = _mm512_and_si512(_mm512_srli_epi16(raw[r], 2 * g), m2);
        if constexpr (kQ3) q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm[r], hbit), q, four);
        const __m512i sc = _mm512_permutexvar_epi32(idx, scl[r]);
        for (int t = 0; t < T; ++t) isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_dpbusd_epi32(zero, q, av[t]), sc);
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * bs;
      for (int t = 0; t < T; ++t) {
        const int A = hsum512_epi32(isum[r][t]), B = bsum_dot(a[t][b], sc16[r]);
        float part;
        if constexpr (kQ3) {
          part = rounded(a[t][b].d * (h2f(((const BlockQ3_K*)blk)->d) * (float)(A - 4 * B)));
        } else {
          const float dA = rounded(h2f(((const BlockQ2_K*)blk)->d) * (float)A);
          const float mB = rounded(h2f(((const BlockQ2_K*)blk)->dmin) * (float)B);
          part = rounded(a[t][b].d * (dA - mB));
        }
        acc[r][t] += part;
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = acc[r][t];
}

// ---- IQ4_XS -------------------------------------------------------------------
// Sub-blocks 2k and 2k + 1 (elements 64k .. 64k + 63, contiguous) from the
// 32 qs bytes 32k..: [low | high nibbles of the first 16 | likewise of the
// next 16], looked up in the grid + 128 (u8); the dot starts at
// -128 * (sum of each 4 activations), then vpmulld by the lane's scale - 32.
template <int R, int T>
void tile_iq4xs(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockIQ4_XS* w[R];
  const BlockQ8K* a[T];
  for (int r = 0; r < R; ++r) w[r] = (const BlockIQ4_XS*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  float acc[R][T] = {};
  const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(15), bias = _mm512_set1_epi8((char)0x80);
  const __m512i grid = _mm512_broadcast_i32x4(
      _mm_xor_si128(_mm_loadu_si128((const __m128i*)kIq4nlValues), _mm_set1_epi8((char)0x80)));  // value + 128
  for (int64_t b = 0; b < nb; ++b) {
    __m512i isum[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) isum[r][t] = zero;
    for (int k = 0; k < 4; ++k) {
      __m512i av[T], base[T];  // [T] activations 64k..; -128 * their 4-element sums
      for (int t = 0; t < T; ++t) {
        av[t] = _mm512_loadu_si512((const void*)(a[t][b].qs + 64 * k));
        base[t] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, av[t]));
      }
      for (int r = 0; r < R; ++r) {
        const BlockIQ4_XS& B = w[r][b];
        const __m128i lo = _mm_loadu_si128((const __m128i*)(B.qs + 32 * k));
        const __m128i hi = _mm_loadu_si128((const __m128i*)(B.qs + 32 * k + 16));
        const __m512i nib = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(_mm_srli_epi16(lo, 4), lo)),
                               _mm256_set_m128i(_mm_srli_epi16(hi, 4), hi), 1),
            m4);
        const __m512i wq = _mm512_shuffle_epi8(grid, nib);
        const int j0 = 2 * k, j1 = 2 * k + 1;
        const int s0 = (((B.scales_l[k] >> 0) & 15) | (((B.scales_h >> (2 * j0)) & 3) << 4)) - 32;
        const int s1 = (((B.scales_l[k] >> 4) & 15) | (((B.scales_h >> (2 * j1)) & 3) << 4)) - 32;
        const __m512i sc = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(s0)), _mm256_set1_epi32(s1), 1);
        for (int t = 0; t < T; ++t)
          isum[r][t] = _mm512_add_epi32(isum[r][t], _mm512_mullo_epi32(_mm512_dpbusd_epi32(base[t], wq, av[t]), sc));
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        acc[r][t] += rounded(a[t][b].d * (h2f(w[r][b].d) * (float)hsum512_epi32(isum[r][t])));
      }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = acc[r][t];
}

template <class WT, int R, int T>
struct TileK23 {  // WT: std::true_type for Q3_K
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_k23<WT::value, R, T>(W, r, xa, xs, t, y);
  }
};
template <class WT, int R, int T>
struct TileIQ4XS {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_iq4xs<R, T>(W, r, xa, xs, t, y);
  }
};

}  // namespace

GemmFn gemm_kernel_lowbit_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return Gemm<TileK23, std::false_type>::gemm;
    case GgmlType::Q3_K: return Gemm<TileK23, std::true_type>::gemm;
    case GgmlType::IQ4_XS: return Gemm<TileIQ4XS, void>::gemm;
    default: return nullptr;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
