// AVX-512 matmul kernels for the plain (row-major) layouts.
//
// 32-element block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): the AVX2 tile with its
// maddubs/madd/sign chain replaced by one VNNI dpbusd (u8 x s8 -> int32) per
// (row, token, block), in 256-bit registers: the int32 lane j is still the
// exact sum of bytes 4j..4j+3, and the f32 chain per output (one fma per
// block with d_w * d_a, the 8-lane tree at the end) is the AVX2 one, so the
// results are bit-identical to gemm_kernel_avx2; 32 registers allow wider
// tiles. dpbusd needs an unsigned weight operand: signed weights (Q8_0,
// IQ4_NL's grid values, Q4_0's q - 8, Q5_0's q - 16) are fed as q + bias, and the dot starts at -bias * sum(a) of
// the same four bytes (exact in int32).
//
// Float formats (F32, F16, BF16): 16-lane f32 accumulators, one per output,
// weights converted to f32 once per tile and reused across its tokens.
//
// K-quants (Q4_K, Q5_K, Q6_K): matmul_kquant_avx512.cpp; Q2_K, Q3_K, IQ4_XS:
// matmul_lowbit_avx512.cpp.
//
// Batch invariance as in matmul_avx2.cpp: every (r, t) pair runs the same
// instruction sequence on its own accumulators whatever tile it sits in.
// Compiled twice: natively (-mavx512*) and emulated for the tests (see
// backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 4;  // tokens per tile (32 registers: R*T accumulators + R weights)
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

// 32 nibbles -> 32 bytes: low nibbles are elements 0..15, high ones 16..31.
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128((const __m128i*)qs);
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

// The fifth bits of a Q5_0/Q5_1 block as bytes 0 or 16 (bit i of qh -> byte i).
inline __m256i q5_high(const uint8_t* qh) {
  uint32_t bits;
  __builtin_memcpy(&bits, qh, 4);
  return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(16));
}

// ---- 32-element block formats -------------------------------------------
// q(): the weights as unsigned bytes, q_true + kBias.
struct WQ8_0 {
  using Block = BlockQ8_0;
  static constexpr int kBias = 128;
  static constexpr bool kMin = false;
  static __m256i q(const Block& b) {
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)b.qs), _mm256_set1_epi8((char)0x80));
  }
};
struct WQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kBias = 8;
  static constexpr bool kMin = false;
  static __m256i q(const Block& b) { return unpack_nibbles(b.qs); }
};
struct WQ5_0 {
  using Block = BlockQ5_0;
  static constexpr int kBias = 16;
  static constexpr bool kMin = false;
  static __m256i q(const Block& b) { return _mm256_or_si256(unpack_nibbles(b.qs), q5_high(b.qh)); }
};
struct WIQ4_NL {  // the grid values + 128, by one byte shuffle
  using Block = BlockIQ4_NL;
  static constexpr int kBias = 128;
  static constexpr bool kMin = false;
  static __m256i q(const Block& b) {
    const __m128i grid = _mm_xor_si128(_mm_loadu_si128((const __m128i*)kIq4nlValues), _mm_set1_epi8((char)0x80));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(grid), unpack_nibbles(b.qs));
  }
};
struct WQ5_1 {  // weights 0..31 as they are, + m_w * s_a
  using Block = BlockQ5_1;
  static constexpr int kBias = 0;
  static constexpr bool kMin = true;
  static __m256i q(const Block& b) { return _mm256_or_si256(unpack_nibbles(b.qs), q5_high(b.qh)); }
  static fp16_t mh(const Block& b) { return b.m; }
};
struct WQ4_1 {  // weights 0..15 as they are, + m_w * s_a
  using Block = BlockQ4_1;
  static constexpr int kBias = 0;
  static constexpr bool kMin = true;
  static __m256i q(const Block& b) { return unpack_nibbles(b.qs); }
  static fp16_t mh(const Block& b) { return b.m; }
};

template <class WT, int R, int T>
void tile32(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  using Block = typename WT::Block;
  static_assert(R <= 4);
  const int64_t nb = W.cols / QK;
  const Block* w[R];
  const BlockQ8A* a[T];
  for (int r = 0; r < R; ++r) w[r] = (const Block*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];
  __m128 accm[T];  // Q4_1 min term, lane r = row r (lane-wise fma == scalar fma)
  for (int t = 0; t < T; ++t) {
    accm[t] = _mm_setzero_ps();
    for (int r = 0; r < R; ++r) acc[r][t] = _mm256_setzero_ps();
  }
  const __m256i zero = _mm256_setzero_si256();
  const __m256i bias = _mm256_set1_epi8((char)WT::kBias);
  for (int64_t b = 0; b < nb; ++b) {
    // The R row scales (and mins) converted in one go; lanes >= R stay 0.
    __m128i dh = _mm_setzero_si128();
    __m256i wq[R];
    for (int r = 0; r < R; ++r) {
      wq[r] = WT::q(w[r][b]);
      dh = insert16(dh, w[r][b].d, r);
      if constexpr (WT::kMin) dh = insert16(dh, WT::mh(w[r][b]), 4 + r);
    }
    const __m256 dwm = _mm256_cvtph_ps(dh);
    const __m128 dw4 = _mm256_castps256_ps128(dwm);
    for (int t = 0; t < T; ++t) {
      const __m256i aq = _mm256_loadu_si256((const __m256i*)a[t][b].qs);
      // -bias * (sum of each 4 activation bytes): the start of every dot.
      const __m256i base = WT::kBias ? _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, bias, aq)) : zero;
      alignas(16) float sc[4];  // [R] d_w * d_a
      _mm_store_ps(sc, _mm_mul_ps(dw4, _mm_set1_ps(a[t][b].d)));
      for (int r = 0; r < R; ++r) {
        const __m256 p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(base, wq[r], aq));
        acc[r][t] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&sc[r]), acc[r][t]);
      }
      if constexpr (WT::kMin)
        accm[t] = _mm_fmadd_ps(_mm256_extractf128_ps(dwm, 1), _mm_set1_ps(a[t][b].s), accm[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float m[4];  // [R] min terms
    _mm_store_ps(m, accm[t]);
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = hsum256_ps(acc[r][t]) + m[r];
  }
}

// ---- plain float formats --------------------------------------------------
// get(): one element for the tail; local so no shared inline is emitted here.
struct WF32 {
  using Elem = float;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static float get(const float* p) { return *p; }
};
struct WF16 {
  using Elem = fp16_t;
  static __m512 load(const fp16_t* p) { return cvtph_ps512(_mm256_loadu_si256((const __m256i*)p)); }
  static float get(const fp16_t* p) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*p))); }
};
struct WBF16 {
  using Elem = bf16_t;
  static __m512 load(const bf16_t* p) {
    const __m512i v = cvtepu16_epi32_512(_mm256_loadu_si256((const __m256i*)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static float get(const bf16_t* p) { return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128((int)*p << 16))); }
};

template <class WT, int R, int T>
void tilef(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  using Elem = typename WT::Elem;
  const int64_t n = W.cols;
  const Elem* w[R];
  const float* x[T];
  for (int r = 0; r < R; ++r) w[r] = (const Elem*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) x[t] = (const float*)(xa + (t0 + t) * xs);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = WT::load(w[r] + k);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) {
      float s = hsum512_ps(acc[r][t]);
      for (int64_t kk = k; kk < n; ++kk) s = __builtin_fmaf(WT::get(w[r] + kk), x[t][kk], s);
      y[(t0 + t) * W.rows + r0 + r] = s;
    }
}

template <class WT, int R, int T>
struct Tile32 {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile32<WT, R, T>(W, r, xa, xs, t, y);
  }
};
template <class WT, int R, int T>
struct TileF {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tilef<WT, R, T>(W, r, xa, xs, t, y);
  }
};

}  // namespace

GemmFn gemm_kernel_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return Gemm<Tile32, WQ8_0>::gemm;
    case GgmlType::Q4_0: return Gemm<Tile32, WQ4_0>::gemm;
    case GgmlType::Q4_1: return Gemm<Tile32, WQ4_1>::gemm;
    case GgmlType::Q5_0: return Gemm<Tile32, WQ5_0>::gemm;
    case GgmlType::Q5_1: return Gemm<Tile32, WQ5_1>::gemm;
    case GgmlType::IQ4_NL: return Gemm<Tile32, WIQ4_NL>::gemm;
    case GgmlType::F32: return Gemm<TileF, WF32>::gemm;
    case GgmlType::F16: return Gemm<TileF, WF16>::gemm;
    case GgmlType::BF16: return Gemm<TileF, WBF16>::gemm;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::IQ4_XS:
      return gemm_kernel_lowbit_avx512(t);  // matmul_lowbit_avx512.cpp
    default: return gemm_kernel_kquant_avx512(t);  // Q4_K, Q5_K, Q6_K (matmul_kquant_avx512.cpp) or nullptr
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
