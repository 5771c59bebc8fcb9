// AVX2 matmul kernels. Each output (row r, token t) owns one 8-lane f32
// accumulator (plus, for Q4_1, one scalar for the min term). Blocks are
// visited in order and every (r, t) pair executes the same instruction
// sequence on its own accumulator, whether it sits in a 4x2 tile or in a
// 1x1 remainder; the final horizontal sum is one fixed function. So y[t][r]
// does not depend on the tiling, the thread split or n_tok.
//
// Tiles of kR rows x kT tokens reuse each loaded (and unpacked) weight block
// across kT tokens and each activation block across kR rows.
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"

namespace kvforge {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 2;  // tokens per tile (16 ymm registers bound R*T)
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float h2f(fp16_t h) { return _cvtsh_ss(h); }

inline __m128i insert16(__m128i v, uint16_t x, int lane) {
  switch (lane) {  // lane is a compile-time constant after inlining
    case 0: return _mm_insert_epi16(v, x, 0);
    case 1: return _mm_insert_epi16(v, x, 1);
    case 2: return _mm_insert_epi16(v, x, 2);
    case 3: return _mm_insert_epi16(v, x, 3);
    case 4: return _mm_insert_epi16(v, x, 4);
    case 5: return _mm_insert_epi16(v, x, 5);
    case 6: return _mm_insert_epi16(v, x, 6);
    default: return _mm_insert_epi16(v, x, 7);
  }
}

// 32 nibbles -> 32 bytes: low nibbles are elements 0..15, high ones 16..31.
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128((const __m128i*)qs);
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

// The fifth bits of a Q5_0/Q5_1 block as bytes 0 or 16: byte i gets byte
// i/8 of qh (within each 128-bit half, whose copy of qh sits at its start)
// and keeps bit i%8.
inline __m256i q5_high(const uint8_t* qh) {
  uint32_t bits;
  __builtin_memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32((int)bits),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i sel = _mm256_set1_epi64x(0x8040201008040201);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel), _mm256_set1_epi8(16));
}

// ---- 32-element block formats -------------------------------------------
// Signed weights (Q4_0 after -8, Q5_0 after -16, IQ4_NL's grid values, all
// within -127..127): the int dot uses maddubs with |a| as the unsigned
// operand and w carrying a's sign. Q8_0 (kFull) may hold -128, whose
// negation wraps, so there |w| is the unsigned operand (abs(-128) = 128 as
// u8) and a (-127..127) carries w's sign; pairs <= 2*128*127 < 32767.
struct WQ8_0 {
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true, kMin = false, kFull = true;
  static __m256i q(const Block& b) { return _mm256_loadu_si256((const __m256i*)b.qs); }
};
struct WQ4_0 {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i q(const Block& b) { return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8)); }
};
struct WQ5_0 {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i q(const Block& b) {
    return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(b.qs), q5_high(b.qh)), _mm256_set1_epi8(16));
  }
};
// IQ4_NL: the nibbles index the 16 signed grid values (one byte shuffle).
struct WIQ4_NL {
  using Block = BlockIQ4_NL;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i q(const Block& b) {
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues));
    return _mm256_shuffle_epi8(grid, unpack_nibbles(b.qs));
  }
};
// Unsigned weights (Q4_1 0..15, Q5_1 0..31): maddubs(w, a) directly; + m_w * s_a.
struct WQ4_1 {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i q(const Block& b) { return unpack_nibbles(b.qs); }
  static fp16_t mh(const Block& b) { return b.m; }
};
struct WQ5_1 {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i q(const Block& b) { return _mm256_or_si256(unpack_nibbles(b.qs), q5_high(b.qh)); }
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
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    // The R row scales (and mins) converted in one go; lanes >= R stay 0.
    // Built in registers: a stack array would cost a store-forwarding stall.
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
      const __m256i au = WT::kSigned ? _mm256_sign_epi8(aq, aq) : aq;
      // Scale products d_w * d_a for the R rows; per pair a broadcast load.
      alignas(16) float sc[4];
      _mm_store_ps(sc, _mm_mul_ps(dw4, _mm_set1_ps(a[t][b].d)));
      for (int r = 0; r < R; ++r) {
        __m256i p16;
        if constexpr (requires { WT::kFull; })
          p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(wq[r]), _mm256_sign_epi8(aq, wq[r]));
        else if constexpr (WT::kSigned) p16 = _mm256_maddubs_epi16(au, _mm256_sign_epi8(wq[r], aq));
        else p16 = _mm256_maddubs_epi16(wq[r], aq);
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc[r][t] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&sc[r]), acc[r][t]);
      }
      if constexpr (WT::kMin)
        accm[t] = _mm_fmadd_ps(_mm256_extractf128_ps(dwm, 1), _mm_set1_ps(a[t][b].s), accm[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float m[4];
    _mm_store_ps(m, accm[t]);
    for (int r = 0; r < R; ++r) y[(t0 + t) * W.rows + r0 + r] = hsum(acc[r][t]) + m[r];
  }
}

// ---- plain float formats --------------------------------------------------
struct WF32 {
  using Elem = float;
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static float get(const float* p) { return *p; }
};
struct WF16 {
  using Elem = fp16_t;
  static __m256 load(const fp16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
  static float get(const fp16_t* p) { return _cvtsh_ss(*p); }
};
struct WBF16 {
  using Elem = bf16_t;
  static __m256 load(const bf16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float get(const bf16_t* p) { return bf16_to_fp32(*p); }
};

template <class WT, int R, int T>
void tilef(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  using Elem = typename WT::Elem;
  const int64_t n = W.cols;
  const Elem* w[R];
  const float* x[T];
  for (int r = 0; r < R; ++r) w[r] = (const Elem*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) x[t] = (const float*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = WT::load(w[r] + k);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[r][t]);
      for (int64_t kk = k; kk < n; ++kk) s = std::fma(WT::get(w[r] + kk), x[t][kk], s);
      y[(t0 + t) * W.rows + r0 + r] = s;
    }
}

// ---- K-quants (Q4_K, Q5_K) on Q8_K activations ------------------------------
// Per super-block and pair: the 8 sub-block sums, each times its 6-bit scale,
// are added exactly in int32 lanes (madd with the scale); then one f32 fma
// per super-block, and a scalar fma for the dmin * sum(m_j bsums) term.
// T tokens (1 or 2) share each unpacked weight vector; every (row, token)
// keeps its own integer sums and f32 chain, so T changes no bit.
template <bool kQ5, int R, int T>
void tile_k4(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  const int64_t nb = W.cols / QK_K;
  const Block* w[R];
  for (int r = 0; r < R; ++r) w[r] = (const Block*)W.row(r0 + r);
  const BlockQ8K* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];
  float accm[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) { acc[r][t] = _mm256_setzero_ps(); accm[r][t] = 0; }
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i isum[R][T];
    int bsum[R][T];
    uint8_t sc[R][8], mn[R][8];
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < 8; ++j) k4_scale_min(j, w[r][b].scales, &sc[r][j], &mn[r][j]);
      for (int t = 0; t < T; ++t) {
        isum[r][t] = _mm256_setzero_si256();
        bsum[r][t] = 0;
        for (int j = 0; j < 8; ++j) bsum[r][t] += mn[r][j] * (a[t][b].bsums[2 * j] + a[t][b].bsums[2 * j + 1]);
      }
    }
    for (int c = 0; c < 4; ++c) {  // 64-element chunks: sub-blocks 2c, 2c+1
      __m256i a0[T], a1[T];
      for (int t = 0; t < T; ++t) {
        a0[t] = _mm256_loadu_si256((const __m256i*)(a[t][b].qs + 64 * c));
        a1[t] = _mm256_loadu_si256((const __m256i*)(a[t][b].qs + 64 * c + 32));
      }
      for (int r = 0; r < R; ++r) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)(w[r][b].qs + 32 * c));
        __m256i q0 = _mm256_and_si256(raw, m4);
        __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if constexpr (kQ5) {
          const __m256i qh = _mm256_loadu_si256((const __m256i*)w[r][b].qh);
          const __m256i bit = _mm256_set1_epi8(1);
          q0 = _mm256_or_si256(q0, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), bit), 4));
          q1 = _mm256_or_si256(q1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), bit), 4));
        }
        const __m256i s0 = _mm256_set1_epi16(sc[r][2 * c]), s1 = _mm256_set1_epi16(sc[r][2 * c + 1]);
        for (int t = 0; t < T; ++t) {
          const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, a0[t]), s0);
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, a1[t]), s1);
          isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_add_epi32(p0, p1));
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(h2f(w[r][b].d) * a[t][b].d),
                                    acc[r][t]);
        accm[r][t] = std::fma(h2f(w[r][b].dmin) * a[t][b].d, (float)-bsum[r][t], accm[r][t]);
      }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[(t0 + t) * W.rows + r0 + r] = hsum(acc[r][t]) + accm[r][t];
}

template <class WT, int R, int T>
struct TileK4 {  // the Tiler's token tiles (kT = 2) or single tokens
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_k4<WT::value, R, T>(W, r, xa, xs, t, y);
  }
};

// ---- Q6_K on Q8_K activations -----------------------------------------------
// Element 128h + 32g + l: low four bits from ql[64h + 32(g&1) + l] (low nibble
// for g < 2, high for g >= 2), top two from qh[32h + l] >> 2g; weight q - 32
// with q in 0..63. maddubs(q, a) pairs (<= 2*63*127) times the 16-element
// scale (madd) add up exactly in int32 lanes; the -32 offset is
// -32 * sum_s scale_s * bsums_s, subtracted from lane 0 (still exact). Then
// one f32 fma per super-block, as for Q4_K; T tokens as there.
template <int R, int T>
void tile_q6k(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  const int64_t nb = W.cols / QK_K;
  const BlockQ6_K* w[R];
  for (int r = 0; r < R; ++r) w[r] = (const BlockQ6_K*)W.row(r0 + r);
  const BlockQ8K* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i isum[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        int corr = 0;
        for (int s = 0; s < 16; ++s) corr += w[r][b].scales[s] * a[t][b].bsums[s];
        isum[r][t] = _mm256_setr_epi32(-32 * corr, 0, 0, 0, 0, 0, 0, 0);
      }
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < R; ++r) {
        const BlockQ6_K& B = w[r][b];
        const __m256i l0 = _mm256_loadu_si256((const __m256i*)(B.ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i*)(B.ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i*)(B.qh + 32 * h));
        const __m256i lo4[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
        for (int g = 0; g < 4; ++g) {
          const __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
          const __m256i q = _mm256_or_si256(lo4[g], _mm256_slli_epi16(hi2, 4));
          const int8_t* sc = B.scales + 8 * h + 2 * g;  // [2] for l < 16, l >= 16
          const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
          for (int t = 0; t < T; ++t) {
            // activations 128h + 32g .. + 31 (L1-resident: reloaded per row)
            const __m256i av = _mm256_loadu_si256((const __m256i*)(a[t][b].qs + 128 * h + 32 * g));
            isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), scv));
          }
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(h2f(w[r][b].d) * a[t][b].d),
                                    acc[r][t]);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) y[(t0 + t) * W.rows + r0 + r] = hsum(acc[r][t]);
}

template <class WT, int R, int T>
struct TileK6 {  // token tiles as TileK4
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_q6k<R, T>(W, r, xa, xs, t, y);
  }
};

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

GemmFn gemm_kernel_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return Gemm<Tile32, WQ8_0>::gemm;
    case GgmlType::Q4_0: return Gemm<Tile32, WQ4_0>::gemm;
    case GgmlType::Q4_1: return Gemm<Tile32, WQ4_1>::gemm;
    case GgmlType::Q5_0: return Gemm<Tile32, WQ5_0>::gemm;
    case GgmlType::Q5_1: return Gemm<Tile32, WQ5_1>::gemm;
    case GgmlType::IQ4_NL: return Gemm<Tile32, WIQ4_NL>::gemm;
    case GgmlType::Q4_K: return Gemm<TileK4, std::false_type>::gemm;
    case GgmlType::Q5_K: return Gemm<TileK4, std::true_type>::gemm;
    case GgmlType::Q6_K: return Gemm<TileK6, void>::gemm;
    case GgmlType::F32: return Gemm<TileF, WF32>::gemm;
    case GgmlType::F16: return Gemm<TileF, WF16>::gemm;
    case GgmlType::BF16: return Gemm<TileF, WBF16>::gemm;
    default: return gemm_kernel_lowbit_avx2(t);  // Q2_K, Q3_K, IQ4_XS (matmul_lowbit_avx2.cpp) or nullptr
  }
}

}  // namespace kvforge
