// AVX2 kernels for Q2_K, Q3_K and IQ4_XS on Q8_K activations, plain layout.
//
// Per (row, token) and super-block the kernel computes the exact int32 sums
// that dot_q2_k / dot_q3_k / dot_iq4_xs (matmul_ref.cpp) compute, A (and B,
// Q2_K's min term), in any lane order (integer sums are exact), then takes
// the reference's float steps on them: blk = d_a * (d * A - dmin * B),
// s += blk, one rounding each (never fused, see rounded()). So these
// kernels, their AVX-512 twins (matmul_lowbit_avx512.cpp) and the scalar
// reference give the same bits, and every (r, t) runs the same steps
// whatever tile or split it sits in (batch invariance).
//
// Tiles of 4 rows x 1 token, like the Q4_K kernels of matmul_avx2.cpp: the
// rows' blocks stay in L1 across the tokens of a tile column.
#include <immintrin.h>

#include <cstring>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"

namespace kvforge {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 2;  // tokens per Tiler step (run one at a time)
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float h2f(fp16_t h) { return _cvtsh_ss(h); }

// v, rounded to f32 where it stands: GCC contracts a * b + c into an fma
// even across statements in C++ (-ffp-contract=fast), which would give other
// bits than the scalar reference (built without FMA). The empty asm makes
// the product a value the compiler cannot look through.
inline float rounded(float v) {
  asm("" : "+x"(v));
  return v;
}

// The two 16-element scales of a 32-element group: int16 lanes 0..7 take
// s0 (elements 0..15), lanes 8..15 s1.
inline __m256i scale_pair(int s0, int s1) { return _mm256_set_m128i(_mm_set1_epi16((short)s1), _mm_set1_epi16((short)s0)); }

// sum_s bsums[s] * v[s] over the 16 sub-blocks (v: 16 int16).
inline int bsum_dot(const BlockQ8K& a, __m256i v) {
  return hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), v));
}

// ---- Q2_K -------------------------------------------------------------------
// Group g of half h (elements 128h + 32g .. + 31) is (qs[32h + l] >> 2g) & 3,
// sub-blocks 8h + 2g and 8h + 2g + 1.
template <int R>
void tile_q2k(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockQ2_K* w[R];
  for (int r = 0; r < R; ++r) w[r] = (const BlockQ2_K*)W.row(r0 + r);
  const BlockQ8K* a = (const BlockQ8K*)(xa + t * xs);
  float acc[R] = {};
  const __m256i m2 = _mm256_set1_epi8(3);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      __m256i av[4];  // [g] activations 128h + 32g .. + 31
      for (int g = 0; g < 4; ++g) av[g] = _mm256_loadu_si256((const __m256i*)(a[b].qs + 128 * h + 32 * g));
      for (int r = 0; r < R; ++r) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)(w[r][b].qs + 32 * h));
        const uint8_t* sc = w[r][b].scales + 8 * h;
        for (int g = 0; g < 4; ++g) {
          const __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g), m2);
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, av[g]), scale_pair(sc[2 * g] & 15, sc[2 * g + 1] & 15));
          isum[r] = _mm256_add_epi32(isum[r], p);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m128i sc = _mm_loadu_si128((const __m128i*)w[r][b].scales);
      const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
      const int A = hsum_epi32(isum[r]), B = bsum_dot(a[b], mins);
      const float dA = rounded(h2f(w[r][b].d) * (float)A);
      const float mB = rounded(h2f(w[r][b].dmin) * (float)B);
      acc[r] += rounded(a[b].d * (dA - mB));
    }
  }
  for (int r = 0; r < R; ++r) y[t * W.rows + r0 + r] = acc[r];
}

// ---- Q3_K -------------------------------------------------------------------
// The 16 scales of a block, -32 applied (q3k_scale in ops/ggml_types.h,
// written out here so that no shared inline is compiled with -mavx2).
inline void q3k_scales(const uint8_t* sc, int16_t out[16]) {
  for (int s = 0; s < 16; ++s)
    out[s] = (int16_t)((((sc[s % 8] >> (4 * (s / 8))) & 15) | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32);
}

// Weights u - 4 with u = low two bits + 4 * (hmask bit) in 0..7: maddubs(u, a)
// times the scale, and -4 * sum_s scale_s * bsums_s for the offset.
template <int R>
void tile_q3k(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockQ3_K* w[R];
  for (int r = 0; r < R; ++r) w[r] = (const BlockQ3_K*)W.row(r0 + r);
  const BlockQ8K* a = (const BlockQ8K*)(xa + t * xs);
  float acc[R] = {};
  const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i isum[R];
    alignas(32) int16_t sc[R][16];  // [R][sub-block]
    for (int r = 0; r < R; ++r) {
      isum[r] = _mm256_setzero_si256();
      q3k_scales(w[r][b].scales, sc[r]);
    }
    for (int h = 0; h < 2; ++h) {
      __m256i av[4];  // [g] activations 128h + 32g .. + 31
      for (int g = 0; g < 4; ++g) av[g] = _mm256_loadu_si256((const __m256i*)(a[b].qs + 128 * h + 32 * g));
      for (int r = 0; r < R; ++r) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)(w[r][b].qs + 32 * h));
        const __m256i hm = _mm256_loadu_si256((const __m256i*)w[r][b].hmask);
        for (int g = 0; g < 4; ++g) {
          const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g), m2);
          const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), one), 2);
          const __m256i u = _mm256_or_si256(lo, hi);
          const int s = 8 * h + 2 * g;
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, av[g]), scale_pair(sc[r][s], sc[r][s + 1]));
          isum[r] = _mm256_add_epi32(isum[r], p);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const int corr = bsum_dot(a[b], _mm256_load_si256((const __m256i*)sc[r]));
      const int A = hsum_epi32(isum[r]) - 4 * corr;
      acc[r] += rounded(a[b].d * (h2f(w[r][b].d) * (float)A));
    }
  }
  for (int r = 0; r < R; ++r) y[t * W.rows + r0 + r] = acc[r];
}

// ---- IQ4_XS -----------------------------------------------------------------
// Sub-block j: 16 bytes of nibbles indexing the IQ4_NL grid (low nibbles
// elements 0..15, high 16..31), signed values: maddubs(|a|, w * sign(a))
// as for Q8_0, times the six-bit scale - 32.
template <int R>
void tile_iq4xs(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockIQ4_XS* w[R];
  for (int r = 0; r < R; ++r) w[r] = (const BlockIQ4_XS*)W.row(r0 + r);
  const BlockQ8K* a = (const BlockQ8K*)(xa + t * xs);
  float acc[R] = {};
  const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues));
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
    for (int j = 0; j < QK_K / 32; ++j) {
      const __m256i aq = _mm256_loadu_si256((const __m256i*)(a[b].qs + 32 * j));
      const __m256i au = _mm256_sign_epi8(aq, aq);
      for (int r = 0; r < R; ++r) {
        const BlockIQ4_XS& B = w[r][b];
        const __m128i raw = _mm_loadu_si128((const __m128i*)(B.qs + 16 * j));
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
        const __m256i wq = _mm256_shuffle_epi8(grid, nib);
        const int ls = (((B.scales_l[j / 2] >> (4 * (j % 2))) & 15) | (((B.scales_h >> (2 * j)) & 3) << 4)) - 32;
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(au, _mm256_sign_epi8(wq, aq)), _mm256_set1_epi16((short)ls));
        isum[r] = _mm256_add_epi32(isum[r], p);
      }
    }
    for (int r = 0; r < R; ++r) {
      acc[r] += rounded(a[b].d * (h2f(w[r][b].d) * (float)hsum_epi32(isum[r])));
    }
  }
  for (int r = 0; r < R; ++r) y[t * W.rows + r0 + r] = acc[r];
}

// One token at a time (Tiler hands out kT-token steps).
template <class WT, int R, int T>
struct TileQ2K {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    for (int i = 0; i < T; ++i) tile_q2k<R>(W, r, xa, xs, t + i, y);
  }
};
template <class WT, int R, int T>
struct TileQ3K {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    for (int i = 0; i < T; ++i) tile_q3k<R>(W, r, xa, xs, t + i, y);
  }
};
template <class WT, int R, int T>
struct TileIQ4XS {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    for (int i = 0; i < T; ++i) tile_iq4xs<R>(W, r, xa, xs, t + i, y);
  }
};

}  // namespace

GemmFn gemm_kernel_lowbit_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return Gemm<TileQ2K, void>::gemm;
    case GgmlType::Q3_K: return Gemm<TileQ3K, void>::gemm;
    case GgmlType::IQ4_XS: return Gemm<TileIQ4XS, void>::gemm;
    default: return nullptr;
  }
}

}  // namespace kvforge
