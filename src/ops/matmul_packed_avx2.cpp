// AVX2 kernels for the interleaved x8 layouts (ops/weight_pack.h).
//
// One 8-lane f32 accumulator per (8-row group, token): lane i is row i. Per
// 32-element block the integer dot of each row is exact (int16/int32 lanes,
// no overflow: |q_w| <= 15 or 128, |q_a| <= 127), so the order in which the
// lanes are added up does not matter; then one f32 fma per block (and one
// more for the Q4_1/Q5_1 min term) into that row's lane. Every (row, token) thus
// follows one fixed chain over the blocks, whether the token runs in a tile
// of kT or alone: y[t][r] is independent of n_tok and of the thread split.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

constexpr int kT = 4;  // tokens per tile

// ---- nibble x8 layouts: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL ------------------------
// Exact int32 dots of the 8 rows with one activation block, lane i = row i.
// w_lo[p]/w_hi[p]: the weights of rows p (low 128 bits) and p+4 (high),
// elements 0..15 and 16..31, as bytes. Unsigned weights (Q4_1 0..15, Q5_1
// 0..31) go into maddubs as they are; signed ones (Q4_0 -8..7, Q5_0
// -16..15, IQ4_NL -127..113) as maddubs(|a|, w * sign(a)). Partial sums stay
// int16 as long as they provably fit, then madd widens to int32:
//   kWiden 0: Q4_1 pairs <= 2*15*127 = 3810, Q4_0 2*8*127, Q5_0 2*16*127 =
//             4064; lo + hi and two add levels: <= 4 * 2 * 4064 = 32512.
//   kWiden 1: Q5_1 pairs <= 2*31*127 = 7874; lo + hi <= 15748, then int32.
//   kWiden 2: IQ4_NL pairs <= 2*127*127 = 32258: each widened at once.
// [sum of v[0]'s 4 int32 | .. v[3]'s] per 128-bit half.
inline __m256i sum4_epi32(const __m256i v[4]) {
  const __m256i v01 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
  const __m256i v23 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(v01, v23), _mm256_unpackhi_epi64(v01, v23));
}

template <bool kSigned, int kWiden>
inline __m256i nib_x8_dot(const __m256i w_lo[4], const __m256i w_hi[4], const int8_t* aq) {
  const __m256i a_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)aq));
  const __m256i a_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(aq + 16)));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s[4];
  for (int p = 0; p < 4; ++p) {
    __m256i pl, ph;
    if constexpr (kSigned) {
      pl = _mm256_maddubs_epi16(_mm256_sign_epi8(a_lo, a_lo), _mm256_sign_epi8(w_lo[p], a_lo));
      ph = _mm256_maddubs_epi16(_mm256_sign_epi8(a_hi, a_hi), _mm256_sign_epi8(w_hi[p], a_hi));
    } else {
      pl = _mm256_maddubs_epi16(w_lo[p], a_lo);
      ph = _mm256_maddubs_epi16(w_hi[p], a_hi);
    }
    if constexpr (kWiden == 0) s[p] = _mm256_add_epi16(pl, ph);
    else if constexpr (kWiden == 1) s[p] = _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones);
    else s[p] = _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones));
  }
  // The sums of rows 0..3 (low half) and 4..7 (high): unpack-and-add trees,
  // not hadds (3 uops and half the throughput each on Zen 3; with several
  // tokens per tile the reduction is what bounds the kernel).
  if constexpr (kWiden == 0) {
    // Per 128-bit half: [a0 b0 a1 b1 ..] of rows 0, 1 (and 2, 3), then
    // [A0 B0 C0 D0 A1 B1 C1 D1], reordered to pairs [A0 A1 B0 B1 ..] for madd.
    const __m256i v01 = _mm256_add_epi16(_mm256_unpacklo_epi16(s[0], s[1]), _mm256_unpackhi_epi16(s[0], s[1]));
    const __m256i v23 = _mm256_add_epi16(_mm256_unpacklo_epi16(s[2], s[3]), _mm256_unpackhi_epi16(s[2], s[3]));
    const __m256i x = _mm256_add_epi16(_mm256_unpacklo_epi32(v01, v23), _mm256_unpackhi_epi32(v01, v23));
    const __m256i pairs = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,  //
                                           0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
    return _mm256_madd_epi16(_mm256_shuffle_epi8(x, pairs), ones);  // lanes: rows 0..3 | 4..7
  } else {
    return sum4_epi32(s);
  }
}

// The fifth bits of nibble vector k (ops/weight_pack.h) as bytes 0 or 16:
// bit k of every plane byte moved to bit 4. A 16-bit shift drags bits of the
// neighbouring byte along, but only into bits 0..3 (left) or 5..7 (right).
inline __m256i q5_high_x8(__m256i plane, int k) {
  const __m256i v = k <= 4 ? _mm256_slli_epi16(plane, 4 - k) : _mm256_srli_epi16(plane, k - 4);
  return _mm256_and_si256(v, _mm256_set1_epi8(16));
}

// Weights of one x8 block as the bytes nib_x8_dot takes, per layout.
template <GgmlType kType>
struct NibX8 {
  static constexpr bool kQ5 = kType == GgmlType::Q5_0 || kType == GgmlType::Q5_1;
  static constexpr bool kMin = kType == GgmlType::Q4_1 || kType == GgmlType::Q5_1;
  static constexpr bool kSigned = !kMin;
  static constexpr int kWiden = kType == GgmlType::IQ4_NL ? 2 : kType == GgmlType::Q5_1 ? 1 : 0;
  using Block = std::conditional_t<kType == GgmlType::Q4_1, BlockQ4_1x8,
                std::conditional_t<kType == GgmlType::Q5_0, BlockQ5_0x8,
                std::conditional_t<kType == GgmlType::Q5_1, BlockQ5_1x8, BlockQ4_0x8>>>;

  static void weights(const Block& B, __m256i lo[4], __m256i hi[4]) {
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int p = 0; p < 4; ++p) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[p]);
      lo[p] = _mm256_and_si256(raw, m4);
      hi[p] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    }
    if constexpr (kQ5) {
      const __m256i plane = _mm256_loadu_si256((const __m256i*)B.qh);
      for (int p = 0; p < 4; ++p) {
        lo[p] = _mm256_or_si256(lo[p], q5_high_x8(plane, 2 * p));
        hi[p] = _mm256_or_si256(hi[p], q5_high_x8(plane, 2 * p + 1));
      }
    }
    if constexpr (kType == GgmlType::IQ4_NL) {
      const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues));
      for (int p = 0; p < 4; ++p) {
        lo[p] = _mm256_shuffle_epi8(grid, lo[p]);
        hi[p] = _mm256_shuffle_epi8(grid, hi[p]);
      }
    } else if constexpr (kSigned) {  // Q4_0: q - 8, Q5_0: q - 16
      const __m256i off = _mm256_set1_epi8(kQ5 ? 16 : 8);
      for (int p = 0; p < 4; ++p) {
        lo[p] = _mm256_sub_epi8(lo[p], off);
        hi[p] = _mm256_sub_epi8(hi[p], off);
      }
    }
  }
};

template <GgmlType kType, int T>
void tile_nib_x8(const typename NibX8<kType>::Block* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0,
                 int64_t rows, int64_t r0, float* y) {
  using L = NibX8<kType>;
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = w[b];
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.d));
    __m256 mw = _mm256_setzero_ps();
    if constexpr (L::kMin) mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)B.m));
    __m256i lo[4], hi[4];
    L::weights(B, lo, hi);
    for (int t = 0; t < T; ++t) {
      const __m256 isum = _mm256_cvtepi32_ps(nib_x8_dot<L::kSigned, L::kWiden>(lo, hi, a[t][b].qs));
      acc[t] = _mm256_fmadd_ps(isum, _mm256_mul_ps(dw, _mm256_set1_ps(a[t][b].d)), acc[t]);
      if constexpr (L::kMin) acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[t][b].s), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}

// ---- Q8_0x8 ----------------------------------------------------------------
// Element vector c (ops/weight_pack.h) holds elements 4c..4c+3 of the 8 rows:
// against those 4 activations in every dword, maddubs + madd give each row
// its partial dot in its own lane (no horizontal sums). Weights -128..127:
// maddubs(|w|, sign(a, w)) (|-128| = 128 as u8; a is -127..127, so negating
// it cannot wrap as negating w = -128 would), pairs <= 2*128*127 < 32767.
template <int T>
void tile_q8_0x8(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                 int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[b].d));
    __m256i isum[T];
    for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i wq = _mm256_loadu_si256((const __m256i*)w[b].qs[c]);
      const __m256i wu = _mm256_abs_epi8(wq);
      for (int t = 0; t < T; ++t) {
        int32_t a4;
        std::memcpy(&a4, a[t][b].qs + 4 * c, 4);
        const __m256i p = _mm256_maddubs_epi16(wu, _mm256_sign_epi8(_mm256_set1_epi32(a4), wq));
        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, ones));
      }
    }
    for (int t = 0; t < T; ++t)
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a[t][b].d)), acc[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0, acc[t]);
}

template <GgmlType kType>
struct TileNib {
  template <int T>
  struct Tile {
    static void run(const typename NibX8<kType>::Block* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t,
                    int64_t rows, int64_t r, float* y) {
      tile_nib_x8<kType, T>(w, nb, xa, xs, t, rows, r, y);
    }
  };
};
template <GgmlType kType>
constexpr GemmFn gemm_nib_x8 = tiling::gemm_x8<kT, typename NibX8<kType>::Block, TileNib<kType>::template Tile>;
template <int T>
struct TileQ8_0 {
  static void run(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                  int64_t r, float* y) {
    tile_q8_0x8<T>(w, nb, xa, xs, t, rows, r, y);
  }
};

// ---- F16 x8 (element-interleaved) ----------------------------------------
// Lane i of an accumulator is row 8g+i, and every output is one fma chain
// over k = 0..cols-1 in order: the same for every tile shape, so
// batch-invariant. Prefill tiles are 2 groups x 4 tokens (8 independent
// chains hide the fma latency); single tokens take up to 4 groups at once,
// which keeps one fma per cycle going, more than memory can feed.
template <int G, int T>  // G groups of 8 rows, T tokens
void tile_f16x8(const fp16_t* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows, int64_t r0,
                float* y) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = (const float*)(xa + (t0 + t) * xs);
  const size_t gs = (size_t)cols * kPackRows;  // fp16 per group
  __m256 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < cols; ++k) {
    __m256 wv[G];
    for (int g = 0; g < G; ++g) wv[g] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + g * gs + k * kPackRows)));
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x[t] + k);
      for (int g = 0; g < G; ++g) acc[g][t] = _mm256_fmadd_ps(wv[g], xb, acc[g][t]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0 + 8 * g, acc[g][t]);
}

// The prefill tiles, 2 groups x T tokens (T = 4 or 6), with the
// accumulators spelled out: as an array of this size GCC 12 stores them to
// the stack every iteration. T = 6 gives 12 independent chains, slack over
// the 4-cycle fma latency (8 chains are exactly at the limit); T = 4 takes
// the remainder of a 64-token block.
template <int T>
void tile_f16x8_2xT(const fp16_t* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                    int64_t r0, float* y) {
  static_assert(T == 4 || T == 6);
  const float* x0 = (const float*)(xa + t0 * xs);
  const float* x1 = (const float*)(xa + (t0 + 1) * xs);
  const float* x2 = (const float*)(xa + (t0 + 2) * xs);
  const float* x3 = (const float*)(xa + (t0 + 3) * xs);
  const float* x4 = T > 4 ? (const float*)(xa + (t0 + 4) * xs) : x0;
  const float* x5 = T > 4 ? (const float*)(xa + (t0 + 5) * xs) : x0;
  const fp16_t* w1 = w + (size_t)cols * kPackRows;
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00;  // group 0
  __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00, a15 = a00;                 // group 1
  for (int64_t k = 0; k < cols; ++k) {
    const __m256 w0v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + k * kPackRows)));
    const __m256 w1v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w1 + k * kPackRows)));
    __m256 xb = _mm256_broadcast_ss(x0 + k);
    a00 = _mm256_fmadd_ps(w0v, xb, a00);
    a10 = _mm256_fmadd_ps(w1v, xb, a10);
    xb = _mm256_broadcast_ss(x1 + k);
    a01 = _mm256_fmadd_ps(w0v, xb, a01);
    a11 = _mm256_fmadd_ps(w1v, xb, a11);
    xb = _mm256_broadcast_ss(x2 + k);
    a02 = _mm256_fmadd_ps(w0v, xb, a02);
    a12 = _mm256_fmadd_ps(w1v, xb, a12);
    xb = _mm256_broadcast_ss(x3 + k);
    a03 = _mm256_fmadd_ps(w0v, xb, a03);
    a13 = _mm256_fmadd_ps(w1v, xb, a13);
    if constexpr (T > 4) {
      xb = _mm256_broadcast_ss(x4 + k);
      a04 = _mm256_fmadd_ps(w0v, xb, a04);
      a14 = _mm256_fmadd_ps(w1v, xb, a14);
      xb = _mm256_broadcast_ss(x5 + k);
      a05 = _mm256_fmadd_ps(w0v, xb, a05);
      a15 = _mm256_fmadd_ps(w1v, xb, a15);
    }
  }
  float* o = y + t0 * rows + r0;
  const __m256 g0[6] = {a00, a01, a02, a03, a04, a05}, g1[6] = {a10, a11, a12, a13, a14, a15};
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(o + t * rows, g0[t]);
    _mm256_storeu_ps(o + t * rows + 8, g1[t]);
  }
}

void f16x8_tile1(int n_groups, const fp16_t* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                int64_t r, float* y) {
  switch (n_groups) {
    case 1: return tile_f16x8<1, 1>(w, cols, xa, xs, t, rows, r, y);
    case 2: return tile_f16x8<2, 1>(w, cols, xa, xs, t, rows, r, y);
    case 3: return tile_f16x8<3, 1>(w, cols, xa, xs, t, rows, r, y);
    default: return tile_f16x8<4, 1>(w, cols, xa, xs, t, rows, r, y);
  }
}

// Tiles of T tokens over the ng groups from row r: pairs, then a single group.
template <int T>
void f16x8_tiles(int ng, const fp16_t* base, const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t t,
                 int64_t r, float* y) {
  for (int g = 0; g < ng; g += 2) {
    const int64_t rg = r + g * kPackRows;
    if (ng - g >= 2) tile_f16x8_2xT<T>(base + rg * W.cols, W.cols, xa, xs, t, W.rows, rg, y);
    else tile_f16x8<1, T>(base + rg * W.cols, W.cols, xa, xs, t, W.rows, rg, y);
  }
}

void gemm_f16x8(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                float* y) {
  const fp16_t* base = (const fp16_t*)W.data;
  for (int64_t r = r0; r < r1; r += 4 * kPackRows) {  // blocks of up to 4 groups
    const int ng = (int)std::min<int64_t>(4, (r1 - r) / kPackRows);
    int64_t t = t0;
    // Token tiles of 6, then one of 4, then single tokens; pairs of groups,
    // then a single group. Every output is the same fma chain in all of them.
    for (; t + 6 <= t1; t += 6) f16x8_tiles<6>(ng, base, W, xa, xs, t, r, y);
    for (; t + 4 <= t1; t += 4) f16x8_tiles<4>(ng, base, W, xa, xs, t, r, y);
    for (; t < t1; ++t) f16x8_tile1(ng, base + r * W.cols, W.cols, xa, xs, t, W.rows, r, y);
  }
}

}  // namespace

GemmFn gemm_kernel_packed_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return gemm_nib_x8<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return gemm_nib_x8<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return gemm_nib_x8<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return gemm_nib_x8<GgmlType::Q5_1>;
    case GgmlType::IQ4_NL: return gemm_nib_x8<GgmlType::IQ4_NL>;
    case GgmlType::Q8_0: return tiling::gemm_x8<kT, BlockQ8_0x8, TileQ8_0>;
    case GgmlType::F16: return gemm_f16x8;
    default: return gemm_kernel_kpack_avx2(t);  // Q3_K..Q6_K (matmul_kpack_avx2.cpp) or nullptr
  }
}

}  // namespace kvforge
