#pragma once
// The parts of the x8 K-quant kernels (ops/weight_pack.h: Q2_Kx8, Q3_Kx8,
// Q4_Kx8, Q5_Kx8, Q6_Kx8, IQ4_XSx8) that do not depend on the SIMD level: the tile loop over
// super-blocks and tokens, the sub-block scale vectors, and per super-block
// the min / offset sums and the reference's f32 steps. Each ISA's file
// (matmul_kpack_avx2.cpp, matmul_kpack_avx512.cpp) supplies only the
// integer sums A of the sub-block dots, as a class Sums with, per block X,
//   template <int T>
//   static void sums(const X&, const BlockQ8K* const* a, int64_t b, __m256i* A);
// (A += the sums, lane i = row i, one __m256i per token of a[0..T-1]).
// AVX2 intrinsics only, and internal linkage: every including file keeps
// its own copy, built with its own flags (see backend/simd_avx512.h).
//
// Per (row, token) and super-block the result is the exact int32 sums of
// dot_q2_k .. dot_q6_k, dot_iq4_xs (matmul_ref.cpp), A (and Q2_K's, Q4_K's,
// Q5_K's B), then
// the reference's own f32 steps, one rounding each (never fused: see
// rounded()). So every level gives the scalar reference's bits, and each
// (row, token) runs the same steps whatever tile or thread split it sits in
// (batch invariance).
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::kpack {
namespace {

// v, rounded to f32 where it stands: GCC contracts a * b + c into an fma
// even across statements (-ffp-contract=fast); the scalar reference is
// built without FMA. The empty asm hides the value from the compiler.
inline __m256 rounded(__m256 v) {
  asm("" : "+x"(v));
  return v;
}

// Activations 4c..4c+3 in every dword.
inline __m256i act4(const BlockQ8K& a, int c) {
  int32_t v;
  std::memcpy(&v, a.qs + 4 * c, 4);
  return _mm256_set1_epi32(v);
}

inline __m256 load_d8(const fp16_t* d) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)d)); }

// Shuffle patterns that put one sub-block's scale of row i into both int16
// halves of dword i, from 16 scale bytes broadcast to both 128-bit lanes
// (rows 0..3 read by the low lane, 4..7 by the high one). [odd sub-block].
struct ScaleIdx {
  alignas(32) int8_t v[2][32];
};
// Q4_Kx8 sc[j], sc[j + 1] (j even): row i's byte is i (j) or 8 + i (j + 1),
// zero-extended (-1 selects a zero byte).
constexpr ScaleIdx kQ4kIdx = [] {
  ScaleIdx x{};
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 8; ++i)
      for (int h = 0; h < 2; ++h) x.v[o][4 * i + 2 * h] = (int8_t)(8 * o + i), x.v[o][4 * i + 2 * h + 1] = -1;
  return x;
}();
// Q6_Kx8 sc[p] (pairs): row i's byte is 2i (sub-block 2p) or 2i + 1, copied
// to both bytes of each int16; srai 8 then sign-extends it.
constexpr ScaleIdx kQ6kIdx = [] {
  ScaleIdx x{};
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 8; ++i)
      for (int k = 0; k < 4; ++k) x.v[o][4 * i + k] = (int8_t)(2 * i + o);
  return x;
}();

inline __m256i scale_dup16(const void* p, const ScaleIdx& idx, int odd) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)p));
  return _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i*)idx.v[odd]));
}

// Dword i: (sc_i, sc_i) of sub-block j of a Q4_Kx8 / Q5_Kx8, s of a Q6_Kx8 /
// Q3_Kx8 / IQ4_XSx8 block (signed scale pairs), s of a Q2_Kx8 (its low nibble).
template <class X>  // Q4_Kx8, Q5_Kx8
inline __m256i q4k_scale(const X& B, int j) { return scale_dup16(B.sc[j & ~1], kQ4kIdx, j & 1); }
template <class X>  // Q6_Kx8, Q3_Kx8, IQ4_XSx8
inline __m256i q6k_scale(const X& B, int s) {
  return _mm256_srai_epi16(scale_dup16(B.sc[s / 2], kQ6kIdx, s & 1), 8);
}
inline __m256i q2k_scale(const BlockQ2_Kx8& B, int s) {
  return _mm256_and_si256(scale_dup16(B.sc[s / 2], kQ6kIdx, s & 1), _mm256_set1_epi16(15));
}
// Dword i: sub-block j's scale of an IQ4_XSx8 block as an int32.
inline __m256i iq4xs_scale32(const BlockIQ4_XSx8& B, int j) {
  return _mm256_srai_epi32(scale_dup16(B.sc[j / 2], kQ6kIdx, j & 1), 24);
}

// Q4_K: B = sum_j m_j (bsums[2j] + bsums[2j+1]), the mins of sub-blocks
// 2p, 2p+1 times the pair p of those sums per madd.
template <class X>  // Q4_Kx8, Q5_Kx8
inline __m256i mins(const X& B, const BlockQ8K& a) {
  const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i*)a.bsums), _mm_loadu_si128((const __m128i*)(a.bsums + 8)));
  __m256i m = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    const __m256i mp = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)B.mn[p]));
    const __m256i bp = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(bs), _mm256_set1_epi32(p));
    m = _mm256_add_epi32(m, _mm256_madd_epi16(mp, bp));
  }
  return m;
}

// Q2_K: B = sum_s m_s bsums[s], m_s the high nibble of scale byte s, pairs
// of sub-blocks per madd.
inline __m256i mins(const BlockQ2_Kx8& B, const BlockQ8K& a) {
  __m256i m = _mm256_setzero_si256();
  for (int p = 0; p < 8; ++p) {
    int32_t pair;
    std::memcpy(&pair, a.bsums + 2 * p, 4);
    const __m256i mp = _mm256_srli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)B.sc[p])), 4);
    m = _mm256_add_epi32(m, _mm256_madd_epi16(mp, _mm256_set1_epi32(pair)));
  }
  return m;
}

// Q6_K, Q3_K: sum_s sc_s bsums[s] (times the offset, 32 or 4: the share of
// q = u - offset with u >= 0 what the kernels multiply), scale pairs x bsum pairs.
template <class X>
inline __m256i q6k_offset(const X& B, const BlockQ8K& a) {
  __m256i corr = _mm256_setzero_si256();
  for (int p = 0; p < 8; ++p) {
    int32_t pair;
    std::memcpy(&pair, a.bsums + 2 * p, 4);
    const __m256i sp = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)B.sc[p]));
    corr = _mm256_add_epi32(corr, _mm256_madd_epi16(sp, _mm256_set1_epi32(pair)));
  }
  return corr;
}

// log2 of the offset that Q3_K's (4) and Q6_K's (32) kernels multiply
// unsigned quants without; IQ4_XS's quants are signed (-1: none).
template <class X>
constexpr int kLog2Offset = std::is_same_v<X, BlockQ3_Kx8> ? 2 : std::is_same_v<X, BlockQ6_Kx8> ? 5 : -1;

// One tile: T tokens x the 8 rows of a group, over all super-blocks.
template <class Sums, class X, int T>
void tile(const X* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows, int64_t r0, float* y) {
  const BlockQ8K* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const X& B = w[b];
    if constexpr (T == 1) tiling::prefetch_stream<sizeof(X)>(&B);  // decode's weight stream
    __m256i A[T];
    for (int t = 0; t < T; ++t) A[t] = _mm256_setzero_si256();
    Sums::template sums<T>(B, a, b, A);
    const __m256 d = load_d8(B.d);
    for (int t = 0; t < T; ++t) {
      const __m256 da = _mm256_set1_ps(a[t][b].d);
      if constexpr (requires { B.dmin; }) {  // Q2_K, Q4_K, Q5_K: s += d_a * (d * A - dmin * B)
        const __m256 dA = rounded(_mm256_mul_ps(d, _mm256_cvtepi32_ps(A[t])));
        const __m256 mB = rounded(_mm256_mul_ps(load_d8(B.dmin), _mm256_cvtepi32_ps(mins(B, a[t][b]))));
        acc[t] = _mm256_add_ps(acc[t], rounded(_mm256_mul_ps(da, _mm256_sub_ps(dA, mB))));
      } else {  // Q3_K, Q6_K, IQ4_XS: s += d_a * (d * A), A = sum sc (u a) - offset * sum sc bsums
        __m256i Ai = A[t];
        if constexpr (kLog2Offset<X> >= 0)
          Ai = _mm256_sub_epi32(Ai, _mm256_slli_epi32(q6k_offset(B, a[t][b]), kLog2Offset<X>));
        const __m256 dA = rounded(_mm256_mul_ps(d, _mm256_cvtepi32_ps(Ai)));
        acc[t] = _mm256_add_ps(acc[t], rounded(_mm256_mul_ps(da, dA)));
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}

template <class Sums, class X>
struct Tile {
  template <int T>
  struct Of {
    static void run(const X* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows, int64_t r,
                    float* y) {
      tile<Sums, X, T>(w, nb, xa, xs, t, rows, r, y);
    }
  };
};
template <int kT, class Sums, class X>
constexpr GemmFn gemm_x8k = tiling::gemm_x8<kT, X, Tile<Sums, X>::template Of, QK_K>;

// The GemmFn of Q2_K .. Q6_K, IQ4_XS (nullptr for other types), tiles of kT tokens.
template <int kT, class Sums>
GemmFn gemm_kernel(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return gemm_x8k<kT, Sums, BlockQ2_Kx8>;
    case GgmlType::Q3_K: return gemm_x8k<kT, Sums, BlockQ3_Kx8>;
    case GgmlType::Q4_K: return gemm_x8k<kT, Sums, BlockQ4_Kx8>;
    case GgmlType::Q5_K: return gemm_x8k<kT, Sums, BlockQ5_Kx8>;
    case GgmlType::Q6_K: return gemm_x8k<kT, Sums, BlockQ6_Kx8>;
    case GgmlType::IQ4_XS: return gemm_x8k<kT, Sums, BlockIQ4_XSx8>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace kvforge::kpack
