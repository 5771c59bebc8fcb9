// AVX2 GEMM for the x8 layouts of Q4_0, Q5_0 and IQ4_NL (ops/weight_pack.h),
// tiles of two row groups x 4 tokens: each broadcast of 4 activations
// serves both groups' element vectors (a last single group: 8, 4, 1 tokens).
// Calls of fewer than 4 tokens (decode; Q4_0 and Q5_0, IQ4_NL decodes on
// matmul_packed_avx2.cpp's sign-form tiles) run one group x 1 token tiles
// that prefetch the stream ahead (tiling::prefetch_stream): the two-group
// 1-token tile read a Q5_0 file 15-20 % slower than a one-group one.
//
// Q4_0 and Q5_0 on their stored, unsigned q: maddubs(q, a) takes the
// weights as they are, where the sign trick needs an abs per weight vector
// and a sign per product and token. The weight is q - bias (Q4_0 q 0..15,
// bias 8; Q5_0 q 0..31 with the fifth bit, bias 16), so the bias term
// -bias * (sum of the activations) goes in as the start of the int16 sums:
// lane j of a row's dword sums the 16 elements 4c + 2j, 4c + 2j + 1
// (c = 0..7), and starts at -bias times their activations' sum, taken once
// per call for all row groups. Exactness: maddubs pairs stay <= 2*31*127
// (no saturation), vpaddw wraps, and the lane's final value sum (q - bias) a
// is <= 16*16*127 = 32512 < 2^15 in magnitude, so the int16 lanes end exact
// whatever they pass through; madd adds the two into the row's block dot.
//
// IQ4_NL's table values (-127..113) take the sign trick, maddubs(|v|,
// a * sign(v)): pairs <= 2*127*127 = 32258, each product widened at once
// (no int16 headroom for a second; an unsigned v + 128 would saturate).
//
// Every block's isum is the reference's, and the f32 steps are
// ops/nibpack_x8.h's: the scalar reference's bits for every tile shape and
// thread split.
#include <immintrin.h>

#include <vector>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge {

namespace {

using nibpack::Nib;

constexpr int kT = 8;  // tokens per tile (then 4, then 1)

template <GgmlType kType>
constexpr int kBias = kType == GgmlType::Q4_0 ? 8 : kType == GgmlType::Q5_0 ? 16 : 0;  // IQ4_NL: none

// T tokens from t0 x G groups of 8 rows from r0 (w: G x nb blocks), over
// all blocks. bias: [T][nb] dwords, the start of every row's int16 lane
// pair (Q4_0, Q5_0); p: those lanes, or IQ4_NL's int32 sums.
template <GgmlType kType, int G, int T>
void tile(const typename Nib<kType>::Block* w, int64_t nb, const uint8_t* xa, size_t xs, const int32_t* bias,
          int64_t t0, int64_t rows, int64_t r0, float* y) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  constexpr bool kTable = Nib<kType>::kTable;
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  const __m256i grid = kTable ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues)) : m4;
  __m256 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (G == 1 && T == 1) tiling::prefetch_stream<sizeof(w[b])>(w + b);  // decode's weight stream
    __m256i qh[G], p[G][T];
    for (int g = 0; g < G; ++g) {
      if constexpr (Nib<kType>::kQ5) qh[g] = _mm256_loadu_si256((const __m256i*)w[g * nb + b].qh);
      for (int t = 0; t < T; ++t) p[g][t] = kTable ? _mm256_setzero_si256() : _mm256_set1_epi32(bias[t * nb + b]);
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      __m256i raw[G];
      for (int g = 0; g < G; ++g) raw[g] = _mm256_loadu_si256((const __m256i*)w[g * nb + b].qs[m]);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int c = m + 4 * h;
        __m256i q[G], u[G];
        for (int g = 0; g < G; ++g) {
          q[g] = _mm256_and_si256(h ? _mm256_srli_epi16(raw[g], 4) : raw[g], m4);
          if constexpr (Nib<kType>::kQ5) q[g] = _mm256_or_si256(q[g], nibpack::q5_fifth(qh[g], c));
          if constexpr (kTable) {
            q[g] = _mm256_shuffle_epi8(grid, q[g]);
            u[g] = _mm256_abs_epi8(q[g]);
          }
        }
        for (int t = 0; t < T; ++t) {
          const __m256i av = nibpack::act4(a[t][b], c);
          for (int g = 0; g < G; ++g) {
            if constexpr (kTable)  // pairs <= 2*127*127 = 32258: each widened at once
              p[g][t] = _mm256_add_epi32(
                  p[g][t], _mm256_madd_epi16(_mm256_maddubs_epi16(u[g], _mm256_sign_epi8(av, q[g])), ones));
            else
              p[g][t] = _mm256_add_epi16(p[g][t], _mm256_maddubs_epi16(q[g], av));
            asm("" : "+x"(p[g][t]));  // one running sum per token: GCC would regroup the adds and spill
          }
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m256 da = _mm256_set1_ps(a[t][b].d);
      for (int g = 0; g < G; ++g) {
        // The reference's steps (ops/nibpack_x8.h): s += isum * (d_w * d_a).
        const __m256 isum = _mm256_cvtepi32_ps(kTable ? p[g][t] : _mm256_madd_epi16(p[g][t], ones));
        const __m256 dd = nibpack::rounded(_mm256_mul_ps(nibpack::load_d8(w[g * nb + b].d), da));
        acc[g][t] = _mm256_add_ps(acc[g][t], nibpack::rounded(_mm256_mul_ps(isum, dd)));
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0 + g * kPackRows, acc[g][t]);
}

// Per token and block the dword (lo, hi) = -bias * (sum of a[4c] + a[4c + 1],
// sum of a[4c + 2] + a[4c + 3]) over c = 0..7; each |.| <= 16 * 16 * 127.
void lane_bias(const uint8_t* xa, size_t xs, int64_t n_tok, int64_t nb, int bias, int32_t* out) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m128i mul = _mm_set1_epi16((int16_t)-bias);
  for (int64_t t = 0; t < n_tok; ++t) {
    const BlockQ8A* a = (const BlockQ8A*)(xa + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      // int16 pair sums (a[2k] + a[2k+1]): even ones the lo lane's, odd the hi's.
      const __m256i s2 = _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i*)a[b].qs));
      __m128i s = _mm_add_epi16(_mm256_castsi256_si128(s2), _mm256_extracti128_si256(s2, 1));
      s = _mm_add_epi16(s, _mm_shuffle_epi32(s, 0x4e));
      s = _mm_add_epi16(s, _mm_shuffle_epi32(s, 0xb1));
      out[t * nb + b] = _mm_cvtsi128_si32(_mm_mullo_epi16(s, mul));
    }
  }
}

template <GgmlType kType>
void gemm(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
          float* y) {
  using Block = typename Nib<kType>::Block;
  const int64_t nb = W.cols / QK;
  thread_local std::vector<int32_t> bias;  // [t1 - t0][nb]
  if constexpr (kBias<kType> != 0) {
    bias.resize((size_t)((t1 - t0) * nb));
    lane_bias(xa + t0 * xs, xs, t1 - t0, nb, kBias<kType>, bias.data());
  }
  const auto at = [&](int64_t t) { return bias.data() + (t - t0) * nb; };
  int64_t r = r0;
  if (t1 - t0 < 4) {  // decode: one group at a time, token by token (prefetching ahead)
    for (; r < r1; r += kPackRows) {
      const Block* w = (const Block*)W.data + (r / kPackRows) * nb;
      for (int64_t t = t0; t < t1; ++t) tile<kType, 1, 1>(w, nb, xa, xs, at(t), t, W.rows, r, y);
    }
    return;
  }
  for (; r + 2 * kPackRows <= r1; r += 2 * kPackRows) {  // pairs of groups: tiles of 4 tokens, then single ones
    const Block* w = (const Block*)W.data + (r / kPackRows) * nb;
    int64_t t = t0;
    for (; t + 4 <= t1; t += 4) tile<kType, 2, 4>(w, nb, xa, xs, at(t), t, W.rows, r, y);
    for (; t < t1; ++t) tile<kType, 2, 1>(w, nb, xa, xs, at(t), t, W.rows, r, y);
  }
  if (r < r1) {  // a last single group: tiles of 8, 4, 1 tokens
    const Block* w = (const Block*)W.data + (r / kPackRows) * nb;
    int64_t t = t0;
    for (; t + kT <= t1; t += kT) tile<kType, 1, kT>(w, nb, xa, xs, at(t), t, W.rows, r, y);
    if (t + 4 <= t1) {
      tile<kType, 1, 4>(w, nb, xa, xs, at(t), t, W.rows, r, y);
      t += 4;
    }
    for (; t < t1; ++t) tile<kType, 1, 1>(w, nb, xa, xs, at(t), t, W.rows, r, y);
  }
}

}  // namespace

GemmFn gemm_kernel_nibu_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return gemm<GgmlType::Q4_0>;
    case GgmlType::Q5_0: return gemm<GgmlType::Q5_0>;
    case GgmlType::IQ4_NL: return gemm<GgmlType::IQ4_NL>;
    default: return nullptr;
  }
}

}  // namespace kvforge
