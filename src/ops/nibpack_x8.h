#pragma once
// The parts of the x8 nibble kernels (ops/weight_pack.h: Q4_0x8, Q4_1x8,
// Q5_0x8, Q5_1x8, IQ4_NLx8) that do not depend on the SIMD level: the tile
// loop over blocks and tokens and the reference's f32 steps per block. Each
// ISA's file (matmul_packed_avx2.cpp, matmul_packed_avx512.cpp) supplies
// only the exact int32 block dots, as a class Sums with
//   template <GgmlType kType, int T>
//   static void sums(const Block<kType>&, const BlockQ8A* const* a, int64_t b, __m256i* A);
// (A[t] = the dots of the 8 rows with a[t][b], lane i = row i). AVX2
// intrinsics only, and internal linkage: every including file keeps its own
// copy, built with its own flags (see backend/simd_avx512.h).
//
// Per (row, token) and block the result is the exact isum of dot_q4_0 ..
// dot_iq4_nl (matmul_ref.cpp), then the reference's own f32 steps, one
// rounding each (never fused: see rounded()), so every level gives the
// scalar reference's bits, and each (row, token) runs the same steps
// whatever tile or thread split it sits in (batch invariance).
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::nibpack {
namespace {

// Per nibble type: the x8 block, whether Q4_1/Q5_1's min term follows, and
// the offset of the stored q (0..15, or 0..31 with the fifth bit) below
// the weight (Q4_0 q - 8, Q5_0 q - 16; IQ4_NL maps q through its table).
template <GgmlType kType>
struct Nib {
  static constexpr bool kQ5 = kType == GgmlType::Q5_0 || kType == GgmlType::Q5_1;
  static constexpr bool kMin = kType == GgmlType::Q4_1 || kType == GgmlType::Q5_1;
  static constexpr bool kTable = kType == GgmlType::IQ4_NL;
  static constexpr int kOffset = kType == GgmlType::Q4_0 ? 8 : kType == GgmlType::Q5_0 ? 16 : 0;
  using Block = std::conditional_t<kType == GgmlType::Q4_1, BlockQ4_1x8,
                std::conditional_t<kType == GgmlType::Q5_0, BlockQ5_0x8,
                std::conditional_t<kType == GgmlType::Q5_1, BlockQ5_1x8, BlockQ4_0x8>>>;
};

// v, rounded to f32 where it stands: GCC contracts a * b + c into an fma
// even across statements (-ffp-contract=fast); the scalar reference is
// built without FMA. The empty asm hides the value from the compiler.
inline __m256 rounded(__m256 v) {
  asm("" : "+x"(v));
  return v;
}

inline __m256 load_d8(const fp16_t* d) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)d)); }

// Activations 4c..4c+3 of a block (the ones element vector E_c meets) in every dword.
inline __m256i act4(const BlockQ8A& a, int c) {
  int32_t v;
  std::memcpy(&v, a.qs + 4 * c, 4);
  return _mm256_set1_epi32(v);
}

// The fifth bits of element vector c (bit c of every qh byte) as bytes 0
// or 16. A 16-bit shift drags bits of the neighbouring byte along, but only
// into bits 0..3 (left) or 5..7 (right), which the mask drops.
inline __m256i q5_fifth(__m256i qh, int c) {
  const __m256i v = c <= 4 ? _mm256_slli_epi16(qh, 4 - c) : _mm256_srli_epi16(qh, c - 4);
  return _mm256_and_si256(v, _mm256_set1_epi8(16));
}

// One tile: T tokens x the 8 rows of a group, over all blocks. Per block and
// token, as dot_q4_0 .. dot_iq4_nl: s += isum * (d_w * d_a) (+ m_w * s_a).
// A single token prefetches the weight stream ahead (tiling::prefetch_stream).
template <class Sums, GgmlType kType, int T>
void tile(const typename Nib<kType>::Block* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
          int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    asm("" : "+x"(acc[t]));  // else GCC clears the spilled ones with a slow-starting rep stos per tile
  }
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = w[b];
    if constexpr (T == 1) tiling::prefetch_stream<sizeof(B)>(&B);
    __m256i A[T];
    Sums::template sums<kType, T>(B, a, b, A);
    const __m256 d = load_d8(B.d);
    for (int t = 0; t < T; ++t) {
      const __m256 dd = rounded(_mm256_mul_ps(d, _mm256_set1_ps(a[t][b].d)));
      __m256 v = rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(A[t]), dd));
      if constexpr (Nib<kType>::kMin)
        v = rounded(_mm256_add_ps(v, rounded(_mm256_mul_ps(load_d8(B.m), _mm256_set1_ps(a[t][b].s)))));
      acc[t] = _mm256_add_ps(acc[t], v);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}

template <class Sums, GgmlType kType>
struct Tile {
  template <int T>
  struct Of {
    static void run(const typename Nib<kType>::Block* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t,
                    int64_t rows, int64_t r, float* y) {
      tile<Sums, kType, T>(w, nb, xa, xs, t, rows, r, y);
    }
  };
};
template <int kT, class Sums, GgmlType kType>
constexpr GemmFn gemm_x8n = tiling::gemm_x8<kT, typename Nib<kType>::Block, Tile<Sums, kType>::template Of>;

// The GemmFn of Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL (nullptr for other types), tiles of kT tokens.
template <int kT, class Sums>
GemmFn gemm_kernel(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return gemm_x8n<kT, Sums, GgmlType::Q4_0>;
    case GgmlType::Q4_1: return gemm_x8n<kT, Sums, GgmlType::Q4_1>;
    case GgmlType::Q5_0: return gemm_x8n<kT, Sums, GgmlType::Q5_0>;
    case GgmlType::Q5_1: return gemm_x8n<kT, Sums, GgmlType::Q5_1>;
    case GgmlType::IQ4_NL: return gemm_x8n<kT, Sums, GgmlType::IQ4_NL>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace kvforge::nibpack
