// AVX-512 VNNI kernels for the interleaved x8 layouts (ops/weight_pack.h).
//
// Per (8-row group, block, token) the 8 exact int32 row dots come from 512-bit
// dpbusd (u8 x s8 -> int32, four products per lane); then the f32 chain of
// matmul_packed_avx2.cpp: one 8-lane accumulator per (group, token), lane
// i = row i (nibble types: the scalar reference's steps, ops/nibpack_x8.h;
// Q8_0: one fma per block with d_w * d_a). The integer dots are exact in
// both, so the results are bit-identical to the AVX2 packed kernels, and
// batch invariant for the same reason (one fixed chain per (row, token)).
// F16 (blocks of 64 rows, element-interleaved): two groups per zmm, each
// lane the same fma chain over the columns as the AVX2 kernel (see its
// section below).
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cstring>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/quantize.h"
#include "ops/tiles16_avx512.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kT = 4;     // tokens per tile
constexpr int kTNib = 8;  // the nibble types' (then 4, then 1): their weights unpacked once for 8 tokens

// ---- nibble x8 layouts: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL ------------------------
// The exact int32 block dots of ops/nibpack_x8.h, which has the tile loop and
// the f32 steps: the AVX2 scheme (matmul_packed_avx2.cpp) on two element
// vectors per zmm (qs[m], qs[m + 1] for m = 0, 2: E_c and E_{c+1}, c = m
// from the low nibbles, c = m + 4 from the high ones), dpbusd against their
// activations (4c..4c+7: the low half's four, then the high half's), picked
// by one permute from the block's 32 activation bytes in both halves.
// dpbusd multiplies unsigned by signed bytes: Q4_1 (0..15) and Q5_1 (0..31)
// weights go in as they are, against the activations; the signed ones
// (Q4_0 q - 8, Q5_0 q - 16, IQ4_NL -127..113) against the activations +
// 128 (1..255), less 128 x (the row's weight sum, dpbusd'd once per block
// for all tokens). |lane| <= 16 * 255 * 127: exact in int32, the same
// integers as the AVX2 kernels; the halves are added once per block.

// Dword indices of E_c's activations: c in the low half, c + 1 in the high one.
inline __m512i act_idx(int c) {
  return _mm512_inserti64x4(_mm512_set1_epi32(c), _mm256_set1_epi32(c + 1), 1);
}

// IQ4_NL's table as bytes for the shuffle.
struct Grid {
  alignas(16) int8_t v[16];
};
constexpr Grid kIq4nlGrid = [] {
  Grid g{};
  for (int i = 0; i < 16; ++i) g.v[i] = kIq4nlValues[i];
  return g;
}();

struct NibSumsAvx512 {
  template <GgmlType kType, int T>
  static void sums(const typename nibpack::Nib<kType>::Block& B, const BlockQ8A* const* a, int64_t b, __m256i* A) {
    using L = nibpack::Nib<kType>;
    constexpr bool kSigned = !L::kMin;
    const __m512i m4 = _mm512_set1_epi8(15), zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80);
    __m512i qh = zero, grid = zero, corr = zero;
    if constexpr (L::kQ5) qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)B.qh));
    if constexpr (L::kTable) grid = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i*)kIq4nlGrid.v));
    __m512i act[T], s[T];  // [token] the 32 activations in both halves (+ 128 for signed weights); sums
    for (int t = 0; t < T; ++t) {
      act[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)a[t][b].qs));
      if constexpr (kSigned) act[t] = _mm512_xor_si512(act[t], bias);
      s[t] = zero;
    }
#pragma GCC unroll 2
    for (int m = 0; m < 4; m += 2) {
      const __m512i raw = _mm512_loadu_si512((const void*)B.qs[m]);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int c = m + 4 * h;  // E_c in the low half, E_{c+1} in the high one
        __m512i e = _mm512_and_si512(h ? _mm512_srli_epi16(raw, 4) : raw, m4);
        if constexpr (L::kQ5) {  // bit c (low half) or c + 1 (high half) of qh, as 16
          const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << c)),
                                                 _mm256_set1_epi8((char)(1 << (c + 1))), 1);
          e = _mm512_or_si512(e, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh, sel), _mm512_set1_epi8(16)));
        }
        if constexpr (L::kTable) e = _mm512_shuffle_epi8(grid, e);
        else if constexpr (kSigned) e = _mm512_sub_epi8(e, _mm512_set1_epi8((char)L::kOffset));
        if constexpr (kSigned) corr = _mm512_dpbusd_epi32(corr, bias, e);  // 128 x the weights
        const __m512i idx = act_idx(c);
        for (int t = 0; t < T; ++t) {
          const __m512i av = _mm512_permutexvar_epi32(idx, act[t]);
          s[t] = kSigned ? _mm512_dpbusd_epi32(s[t], av, e) : _mm512_dpbusd_epi32(s[t], e, av);
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m512i v = kSigned ? _mm512_sub_epi32(s[t], corr) : s[t];
      A[t] = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    }
  }
};

// ---- Q8_0x8 ----------------------------------------------------------------
// Element vectors (ops/weight_pack.h) c, c + 1 per zmm, as q + 128
// (unsigned), against activations 4c..4c+7 (dwords of the low half: the
// first four): dpbusd gives each row its partial dots in its own lanes, the
// halves are added at the end of the block, and -128 x (sum of the block's
// activations) brings the bias back. |lane| <= 32 * 255 * 127: exact in
// int32, the AVX2 kernel's integers.
inline __m256i q8x8_dot(const __m512i wq[4], const int8_t* aq) {
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512i s = _mm512_setzero_si512();
  for (int v = 0; v < 4; ++v) {
    int64_t a8;
    std::memcpy(&a8, aq + 8 * v, 8);
    s = _mm512_dpbusd_epi32(s, wq[v], _mm512_permutexvar_epi32(idx, _mm512_set1_epi64(a8)));
  }
  // sum of the 32 activations: sad over a + 128 (unsigned) minus 32 * 128
  const __m256i au = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)aq), _mm256_set1_epi8((char)0x80));
  const __m256i sad = _mm256_sad_epu8(au, _mm256_setzero_si256());  // 4 x 64-bit partial sums
  __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
  s2 = _mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2));
  const int32_t asum = _mm_cvtsi128_si32(s2) - 32 * 128;
  const __m256i folded = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
  return _mm256_sub_epi32(folded, _mm256_set1_epi32(128 * asum));
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
    if constexpr (T == 1) tiling::prefetch_stream<sizeof(BlockQ8_0x8)>(w + b);  // decode's stream
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
struct TileQ8_0 {
  static void run(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                  int64_t r, float* y) {
    tile_q8_0x8<T>(w, nb, xa, xs, t, rows, r, y);
  }
};

// ---- F16 (blocks of 64 rows, element-interleaved) -----------------------
// The tiles of ops/tiles16_avx512.h, a step per column: each lane runs the
// chain of gemm_x8f in matmul_f16x8_avx2.cpp, acc = 0, then
// acc = fma(w[k], x[k], acc) for k = 0..cols-1 in order, in f32
// (vcvtph2ps is exact). Same operations in the same order, so the same
// bits as the AVX2 kernel.
struct F16Steps {
  using Elem = fp16_t;
  static constexpr size_t kStride = kRows16;  // a block's column: 64 fp16
  static constexpr int kColsPerStep = 1;
  template <bool Half>
  static __m512 load(const fp16_t* p) {
    if constexpr (Half) return cvtph_ps512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)p)));
    else return cvtph_ps512(_mm256_loadu_si256((const __m256i*)p));
  }
  static __m512 bcast(const uint8_t* x, int64_t k) { return _mm512_set1_ps(((const float*)x)[k]); }
  static __m512 madd(__m512 acc, __m512 w, __m512 x) { return _mm512_fmadd_ps(w, x, acc); }
};

// The one-group tiles of each type (nullptr where there are none).
GemmFn one_group_kernel(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return tiling::gemm_x8<kT, BlockQ8_0x8, TileQ8_0>;
    case GgmlType::F16: return gemm16<F16Steps>;
    default: break;
  }
  if (GemmFn f = nibpack::gemm_kernel<kTNib, NibSumsAvx512>(t)) return f;  // Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL
  return gemm_kernel_kpack_avx512(t);  // Q3_K..Q6_K (matmul_kpack_avx512.cpp) or nullptr
}

// The tiles for a task of the quantized types, by its token count (all give
// the same bits): kX16MinTok..kX16MaxTok tokens (a server's batched decode
// step) the two-group tiles of matmul_x16_avx512.cpp, which need no
// preparation pass over weights read once (Q4_0..Q8_0 and IQ4_NL; the
// K-quants and IQ4_XS have none); else kPairsMin tokens or more (prefill)
// the prepared pair tiles (matmul_pairs_avx512.cpp, matmul_kpairs_avx512.cpp:
// one preparation per call pays off over many tokens); else the tiles above.
constexpr int64_t kPairsMin = 16;
template <GgmlType kType>
void by_tokens(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
               float* y) {
  static const GemmFn one = one_group_kernel(kType), x16 = gemm_kernel_x16_avx512(kType),
                      pairs = gemm_kernel_pairs_avx512(kType);
  const int64_t n = t1 - t0;
  const GemmFn fn = x16 && n >= kX16MinTok && n <= kX16MaxTok ? x16 : n >= kPairsMin ? pairs : one;
  fn(W, xa, xs, r0, r1, t0, t1, y);
}

}  // namespace

GemmFn gemm_kernel_packed_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return by_tokens<GgmlType::Q8_0>;
    case GgmlType::Q4_0: return by_tokens<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return by_tokens<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return by_tokens<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return by_tokens<GgmlType::Q5_1>;
    case GgmlType::IQ4_NL: return by_tokens<GgmlType::IQ4_NL>;
    case GgmlType::Q2_K: return by_tokens<GgmlType::Q2_K>;
    case GgmlType::Q3_K: return by_tokens<GgmlType::Q3_K>;
    case GgmlType::Q4_K: return by_tokens<GgmlType::Q4_K>;
    case GgmlType::Q5_K: return by_tokens<GgmlType::Q5_K>;
    case GgmlType::Q6_K: return by_tokens<GgmlType::Q6_K>;
    case GgmlType::IQ4_XS: return by_tokens<GgmlType::IQ4_XS>;
    default: return one_group_kernel(t);
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
