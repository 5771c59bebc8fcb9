// AVX2 kernels of the Q8_0x8 layout (ops/weight_pack.h), and IQ4_NL's x8
// blocks in the same prepared form for prefill.
#include <immintrin.h>

#include <cstring>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/prepared_x8_avx2.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge {

namespace {

using x8prep::gemm_prepared;
using x8prep::Iq4nlLookup;
using x8prep::kPrepMin;

// ---- Q8_0x8 ----------------------------------------------------------------
// Element vector c (ops/weight_pack.h) holds elements 4c..4c+3 of the 8 rows:
// against those 4 activations in every dword, maddubs + madd give each row
// its partial dot in its own lane (no horizontal sums). maddubs needs one
// unsigned operand, so |w| goes in and the activations take w's sign, in
// one of two ways (same integers):
//  - sign form, sign(a, w): a is -127..127, so negating it cannot wrap as
//    negating w = -128 would; pairs <= 2*128*127 < 32767.
//  - xor form, a ^ m with m = (w < 0 ? -1 : 0): for w < 0 that is
//    |w| (-a - 1) = w a - |w|, so the block's dot is the maddubs sums plus
//    neg = the sum of |w| over the row's negative weights. Exact for any
//    int8 a: |w| <= 128 and a ^ m in -128..127, so a pair is in
//    -32768..32512. The xor runs on any of Zen 3's four vector pipes, where
//    vpsignb takes one of the two that maddubs and madd need.
// Prefill tiles use the xor form over blocks prepared once per call (|w|, m,
// neg and d_w in f32: Q8Prep), two row groups at a time so each broadcast
// activation serves both; decode steps the sign form, which needs no extra
// pass over the weights. Then one fma per block with d_w d_a, as before.
//
// IQ4_NL's x8 blocks go through the same prepared form and tiles: two
// 16-entry tables looked up by the nibble (pshufb) give |v| and the sign
// mask at once; pairs <= 2*127*128 = 32512. Its f32 steps are the scalar
// reference's (ops/nibpack_x8.h), so it keeps those bits.
struct Q8Prep {
  __m256i u[8], m[8], neg;  // |w| and sign masks of the element vectors; per row sum of |w| over w < 0
  __m256 d;                 // d_w
};

// P.neg from the prepared u and m: maddubs(|w|, -1 or 0) sums the pairs of
// negative weights (>= -2*128; all 8 element vectors' >= -2048 in int16),
// one madd the two pairs of each row.
inline void prep_neg(Q8Prep& P) {
  __m256i s = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(P.u[c], P.m[c]));
  P.neg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(s, _mm256_set1_epi16(1)));
}

void q8_prepare(const BlockQ8_0x8* w, int64_t nb, Q8Prep* P) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int c = 0; c < 8; ++c) {
      const __m256i wq = _mm256_loadu_si256((const __m256i*)w[b].qs[c]);
      P[b].u[c] = _mm256_abs_epi8(wq);
      P[b].m[c] = _mm256_cmpgt_epi8(_mm256_setzero_si256(), wq);
    }
    prep_neg(P[b]);
    P[b].d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[b].d));
  }
}

// Element vector c = the low nibbles of qs[c] (c < 4) or the high ones of qs[c - 4].
void iq4nl_prepare(const BlockIQ4_NLx8* w, int64_t nb, Q8Prep* P) {
  const __m256i m4 = _mm256_set1_epi8(15);
  const Iq4nlLookup lookup;
  for (int64_t b = 0; b < nb; ++b) {
    for (int k = 0; k < 4; ++k) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)w[b].qs[k]);
      lookup(_mm256_and_si256(raw, m4), P[b].u[k], P[b].m[k]);
      lookup(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), P[b].u[k + 4], P[b].m[k + 4]);
    }
    prep_neg(P[b]);
    P[b].d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[b].d));
  }
}

// The f32 step per block: Q8_0 one fma; IQ4_NL the reference's two roundings.
struct StepFma {
  static __m256 apply(__m256 acc, __m256i isum, __m256 dw, float da) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(da)), acc);
  }
};
struct StepRef {  // ops/nibpack_x8.h: s += isum * (d_w * d_a), each product rounded
  static __m256 apply(__m256 acc, __m256i isum, __m256 dw, float da) {
    const __m256 dd = nibpack::rounded(_mm256_mul_ps(dw, _mm256_set1_ps(da)));
    return _mm256_add_ps(acc, nibpack::rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), dd)));
  }
};

// G row groups x T tokens. kXor: from P[g * nb + b] (q8_prepare,
// iq4nl_prepare); else the sign form straight from w[g * nb + b] (Q8_0).
// kPrefetch: also prefetches pf[b] per block b (the next row group's
// blocks, for decode); a single token in the sign form, the stream ahead
// (tiling::prefetch_stream). Not inlined: the many such loops would only bloat
// their callers.
template <class Step, int G, int T, bool kXor, bool kPrefetch = false>
[[gnu::noinline]] void tile_q8_0x8(const BlockQ8_0x8* w, const Q8Prep* P, int64_t nb, const uint8_t* xa, size_t xs,
                                   int64_t t0, int64_t rows, int64_t r0, float* y, const BlockQ8_0x8* pf = nullptr) {
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  __m256 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (kPrefetch)  // a block's 272 bytes lie within these 5 lines from its start
      for (int l = 0; l < 5; ++l) _mm_prefetch((const char*)(pf + b) + 64 * l, _MM_HINT_T0);
    if constexpr (G == 1 && T == 1 && !kXor) tiling::prefetch_stream<sizeof(BlockQ8_0x8)>(w + b);  // decode's stream
    __m256i isum[G][T];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < T; ++t) isum[g][t] = kXor ? P[g * nb + b].neg : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m256i wu[G], m[G];  // xor form: m the sign mask; sign form: m = w
      for (int g = 0; g < G; ++g) {
        if constexpr (kXor) {
          wu[g] = P[g * nb + b].u[c];
          m[g] = P[g * nb + b].m[c];
        } else {
          m[g] = _mm256_loadu_si256((const __m256i*)w[g * nb + b].qs[c]);
          wu[g] = _mm256_abs_epi8(m[g]);
        }
      }
      for (int t = 0; t < T; ++t) {
        int32_t a4;
        std::memcpy(&a4, a[t][b].qs + 4 * c, 4);
        const __m256i av = _mm256_set1_epi32(a4);
        for (int g = 0; g < G; ++g) {
          const __m256i as = kXor ? _mm256_xor_si256(av, m[g]) : _mm256_sign_epi8(av, m[g]);
          isum[g][t] = _mm256_add_epi32(isum[g][t], _mm256_madd_epi16(_mm256_maddubs_epi16(wu[g], as), ones));
          asm("" : "+x"(isum[g][t]));  // one running sum each: GCC would keep all 8 products and spill
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      const __m256 dw = kXor ? P[g * nb + b].d : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)w[g * nb + b].d));
      for (int t = 0; t < T; ++t) acc[g][t] = Step::apply(acc[g][t], isum[g][t], dw, a[t][b].d);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0 + 8 * g, acc[g][t]);
}

// The xor-form tiles of Q8_0 (Step = StepFma) and IQ4_NL (StepRef) as gemm_prepared's Tile.
template <class Step>
struct TileQ8Xor {
  template <int G, int T>
  static void run(const Q8Prep* P, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t rows, int64_t r,
                  float* y) {
    tile_q8_0x8<Step, G, T, true>(nullptr, P, nb, xa, xs, t, rows, r, y);
  }
};

// Tokens [t, t1), fewer than 2 T of them: one tile of T if they are that
// many, then the rest in halves. kPrefetch: the first tile prefetches pf.
template <int T, bool kPrefetch>
void q8_decode_rest(const BlockQ8_0x8* w, int64_t nb, const uint8_t* xa, size_t xs, int64_t t, int64_t t1,
                    int64_t rows, int64_t r, float* y, const BlockQ8_0x8* pf) {
  if (t + T <= t1) {
    tile_q8_0x8<StepFma, 1, T, false, kPrefetch>(w, nullptr, nb, xa, xs, t, rows, r, y, pf);
    if constexpr (T > 1) q8_decode_rest<T / 2, false>(w, nb, xa, xs, t + T, t1, rows, r, y, pf);
  } else if constexpr (T > 1) {
    q8_decode_rest<T / 2, kPrefetch>(w, nb, xa, xs, t, t1, rows, r, y, pf);
  }
}

// Decode (fewer than kPrepMin tokens: one per sequence of a batched step):
// per row group, sign-form tiles of 8 tokens, then at most one each of 4,
// 2 and 1. With 2 tokens or more the step is compute-bound, and the
// hardware prefetcher alone left the weight stream's misses in series with
// the arithmetic (the 49152-row output head of SmolLM2 at 8 tokens ran at
// the sum of its compute and memory times): the group's first tile
// prefetches the next group's blocks (the last group its own), one block's
// lines per block computed. A single token (bandwidth-bound) prefetches its
// stream kStreamAhead bytes ahead instead.
void gemm_q8_0x8_decode(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                        int64_t t1, float* y) {
  const int64_t nb = W.cols / QK;
  const BlockQ8_0x8* blocks = (const BlockQ8_0x8*)W.data;
  for (int64_t r = r0; r < r1; r += kPackRows) {
    const BlockQ8_0x8* w = blocks + (r / kPackRows) * nb;
    if (t1 - t0 == 1) {
      tile_q8_0x8<StepFma, 1, 1, false>(w, nullptr, nb, xa, xs, t0, W.rows, r, y);
      continue;
    }
    const BlockQ8_0x8* pf = r + kPackRows < W.rows ? w + nb : w;
    static_assert(kPrepMin <= 2 * 8, "q8_decode_rest<8> takes fewer than 16 tokens");
    q8_decode_rest<8, true>(w, nb, xa, xs, t0, t1, W.rows, r, y, pf);
  }
}

void gemm_q8_0x8(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                 float* y) {
  if (t1 - t0 < kPrepMin) return gemm_q8_0x8_decode(W, xa, xs, r0, r1, t0, t1, y);
  gemm_prepared<BlockQ8_0x8, QK, Q8Prep, q8_prepare, TileQ8Xor<StepFma>>(W, xa, xs, r0, r1, t0, t1, y);
}

}  // namespace

GemmFn gemm_kernel_q8x8_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return gemm_q8_0x8;
    case GgmlType::IQ4_NL:
      return gemm_prepared<BlockIQ4_NLx8, QK, Q8Prep, iq4nl_prepare, TileQ8Xor<StepRef>>;
    default: return nullptr;
  }
}

}  // namespace kvforge
