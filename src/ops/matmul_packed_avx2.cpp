// AVX2 kernels for the interleaved x8 layouts (ops/weight_pack.h).
//
// One 8-lane f32 accumulator per (8-row group, token): lane i is row i. Per
// 32-element block the integer dot of each row is exact (int16/int32 lanes,
// no overflow: |q_w| <= 15 or 128, |q_a| <= 127), so the order in which the
// lanes are added up does not matter; then the f32 steps into that row's
// lane: for the nibble types the scalar reference's own (ops/nibpack_x8.h:
// its bits), for Q8_0 one fma per block. Every (row, token) thus follows
// one fixed chain over the blocks, whether the token runs in a tile of 8 or
// alone: y[t][r] is independent of n_tok and of the thread split.
//
// Calls of 16 tokens or more of Q8_0, IQ4_NL, IQ4_XS and Q3_K (prefill)
// prepare the weights of two row groups once per call (gemm_prepared) and
// run tiles of both groups x 2 tokens on them: Q8_0 / IQ4_NL / IQ4_XS in
// the xor form (below), Q3_K on its unpacked u. Same integers, same chains.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/gemm_tiling.h"
#include "ops/kpack_x8.h"
#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

constexpr int kTNib = 8;  // the nibble types' (then 4, then 1): their weights unpacked once for 8 tokens

// ---- nibble x8 layouts: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL ------------------------
// The exact int32 block dots of ops/nibpack_x8.h, which has the tile loop and
// the f32 steps. Element vector E_c (c = 0..7: the low nibbles of qs[c], or
// the high ones of qs[c - 4]) times the four activations 4c..4c+3 broadcast
// to every dword gives, through maddubs, two int16 partial dots per row in
// that row's dword: no horizontal sums. Unsigned weights (Q4_1 0..15, Q5_1
// 0..31) go into maddubs as they are; signed ones (Q4_0 -8..7, Q5_0
// -16..15, IQ4_NL -127..113) as maddubs(|w|, a * sign(w)). The int16 sums
// stay below 2^15 while kPerInt16 products are added, then madd widens:
//   Q4_1 pairs <= 2*15*127 = 3810, Q4_0 2*8*127, Q5_0 2*16*127 = 4064:
//   all 8 of a block <= 32512; Q5_1 2*31*127 = 7874: 4 <= 31496; IQ4_NL
//   2*127*127 = 32258: each widened at once.
struct NibSumsAvx2 {
  template <GgmlType kType, int T>
  static void sums(const typename nibpack::Nib<kType>::Block& B, const BlockQ8A* const* a, int64_t b, __m256i* A) {
    using L = nibpack::Nib<kType>;
    constexpr int kPerInt16 = kType == GgmlType::IQ4_NL ? 1 : kType == GgmlType::Q5_1 ? 4 : 8;
    constexpr bool kSigned = !L::kMin;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256i qh = _mm256_setzero_si256(), grid = qh;
    if constexpr (L::kQ5) qh = _mm256_loadu_si256((const __m256i*)B.qh);
    if constexpr (L::kTable) grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues));
    __m256i p[T];
    for (int t = 0; t < T; ++t) A[t] = p[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[m]);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int c = m + 4 * h;
        __m256i e = _mm256_and_si256(h ? _mm256_srli_epi16(raw, 4) : raw, m4);
        if constexpr (L::kQ5) e = _mm256_or_si256(e, nibpack::q5_fifth(qh, c));
        if constexpr (L::kTable) e = _mm256_shuffle_epi8(grid, e);
        else if constexpr (kSigned) e = _mm256_sub_epi8(e, _mm256_set1_epi8((char)L::kOffset));
        const __m256i u = kSigned ? _mm256_abs_epi8(e) : e;
        for (int t = 0; t < T; ++t) {
          const __m256i av = nibpack::act4(a[t][b], c);
          p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(u, kSigned ? _mm256_sign_epi8(av, e) : av));
          asm("" : "+x"(p[t]));  // one running sum per token: GCC would regroup the adds and spill
        }
        if ((2 * m + h + 1) % kPerInt16 == 0) {  // products so far: 2m + h + 1
          for (int t = 0; t < T; ++t) {
            A[t] = _mm256_add_epi32(A[t], _mm256_madd_epi16(p[t], ones));
            p[t] = _mm256_setzero_si256();
          }
        }
      }
    }
  }
};

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

// |v| and (v < 0 ? -1 : 0) of IQ4_NL's table, for pshufb.
struct Iq4nlTables {
  alignas(16) int8_t abs[16], neg[16];
};
constexpr Iq4nlTables kIq4nl = [] {
  Iq4nlTables x{};
  for (int i = 0; i < 16; ++i) {
    x.abs[i] = (int8_t)(kIq4nlValues[i] < 0 ? -kIq4nlValues[i] : kIq4nlValues[i]);
    x.neg[i] = (int8_t)(kIq4nlValues[i] < 0 ? -1 : 0);
  }
  return x;
}();

// |v| and the sign mask of the table entries q (one nibble per byte).
struct Iq4nlLookup {
  const __m256i tu = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i*)kIq4nl.abs));
  const __m256i tm = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i*)kIq4nl.neg));
  void operator()(__m256i q, __m256i& u, __m256i& m) const {
    u = _mm256_shuffle_epi8(tu, q);
    m = _mm256_shuffle_epi8(tm, q);
  }
};

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

// Per pair of row groups (a last odd one alone): kPrepare, then tiles of 2
// tokens (one group: 4), then single tokens. kElems: elements per block.
template <class Block, int kElems, class Prep, void (*kPrepare)(const Block*, int64_t, Prep*), class Tile>
void gemm_prepared(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  const int64_t nb = W.cols / kElems;
  const Block* blocks = (const Block*)W.data;
  thread_local std::vector<Prep> prep;  // [2][nb] the current groups' blocks
  if ((int64_t)prep.size() < 2 * nb) prep.resize(2 * nb);
  const Prep* P = prep.data();
  for (int64_t r = r0; r < r1; r += 2 * kPackRows) {
    const Block* w = blocks + (r / kPackRows) * nb;
    int64_t t = t0;
    if (r + 2 * kPackRows > r1) {  // the odd group
      kPrepare(w, nb, prep.data());
      for (; t + 4 <= t1; t += 4) Tile::template run<1, 4>(P, nb, xa, xs, t, W.rows, r, y);
      for (; t < t1; ++t) Tile::template run<1, 1>(P, nb, xa, xs, t, W.rows, r, y);
      break;
    }
    kPrepare(w, 2 * nb, prep.data());
    // The next groups' weights, spread over this pair's tiles: their
    // prepare then reads cache instead of stalling on memory alone.
    const char* next = (const char*)(w + 2 * nb);
    const int64_t lines = std::clamp<int64_t>((r1 - r) / kPackRows - 2, 0, 2) * nb * sizeof(Block) / 64;
    const int64_t per_tile = lines / ((t1 - t0) / 2) + 1;
    for (int64_t done = 0; t + 2 <= t1; t += 2) {
      for (const int64_t e = std::min(lines, done + per_tile); done < e; ++done) _mm_prefetch(next + 64 * done, _MM_HINT_T0);
      Tile::template run<2, 2>(P, nb, xa, xs, t, W.rows, r, y);
    }
    if (t < t1) Tile::template run<2, 1>(P, nb, xa, xs, t, W.rows, r, y);
  }
}

// Calls of at least kPrepMin tokens take the prepared tiles; fewer (decode
// steps) Q8_0's sign-form tiles (gemm_q8_0x8_decode).
constexpr int64_t kPrepMin = 16;

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

// ---- IQ4_XSx8 prefill ----------------------------------------------------------
// The xor form on IQ4_XS super-blocks: element vector c = 8j + k of
// sub-block j (the low nibbles of qs[8j + k] for j < 4, the high ones of
// qs[8(j - 4) + k]) prepared as |v| and the sign mask by the IQ4_NL tables;
// each unit maddubs(|v|, a ^ m) (pairs <= 32512) is widened by the madd with
// the sub-block's scale pair (sc in -32..31), and the super-block's sum
// starts at corr = sum_j sc_j * (sum of |v| over v < 0 in sub-block j) of
// the row: the exact int32 A of dot_iq4_xs (|A| <= 256*127*128*32 < 2^31).
// Then ops/kpack_x8.h's f32 steps (s += d_a * (d * A)): the reference's bits.
// Calls of fewer than kPrepMin tokens take kpack's sign-form tiles.
struct XsPrep {
  __m256i u[64], m[64];  // per element vector
  __m256i sc[8];         // dword i: (sc_i, sc_i) of sub-block j
  __m256i corr;
  __m256 d;
};

void iq4xs_prepare(const BlockIQ4_XSx8* w, int64_t nb, XsPrep* P) {
  const __m256i m4 = _mm256_set1_epi8(15);
  const Iq4nlLookup lookup;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i corr = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i scv = kpack::q6k_scale(w[b], j);
      __m256i s = _mm256_setzero_si256();  // int16 pairs: -(sum of |v| over v < 0), <= 8 * 2 * 127
      for (int k = 0; k < 8; ++k) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)w[b].qs[8 * (j % 4) + k]);
        const __m256i q = _mm256_and_si256(j >= 4 ? _mm256_srli_epi16(raw, 4) : raw, m4);
        lookup(q, P[b].u[8 * j + k], P[b].m[8 * j + k]);
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(P[b].u[8 * j + k], P[b].m[8 * j + k]));
      }
      P[b].sc[j] = scv;
      corr = _mm256_sub_epi32(corr, _mm256_madd_epi16(s, scv));
    }
    P[b].corr = corr;
    P[b].d = kpack::load_d8(w[b].d);
  }
}

// G row groups x T tokens over prepared super-blocks (IQ4_XS, Q3_K): per
// super-block Kind::sums adds the integer sums of every (group, token) to
// isum, started at Kind::start(P); then kpack's f32 steps (s += d_a * (d *
// A)) on A = Kind::finish(P, a, isum).
template <class Kind>
struct TileK {
  template <int G, int T>
  [[gnu::noinline]] static void run(const typename Kind::Prep* P, int64_t nb, const uint8_t* xa, size_t xs,
                                    int64_t t0, int64_t rows, int64_t r0, float* y) {
    const BlockQ8K* a[T];
    for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
    __m256 acc[G][T];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i isum[G][T];
      for (int g = 0; g < G; ++g)
        for (int t = 0; t < T; ++t) isum[g][t] = Kind::start(P[g * nb + b]);
      Kind::template sums<G, T>(P, nb, b, a, isum);
      for (int g = 0; g < G; ++g)
        for (int t = 0; t < T; ++t) {
          const __m256i A = Kind::finish(P[g * nb + b], a[t][b], isum[g][t]);
          const __m256 dA = kpack::rounded(_mm256_mul_ps(P[g * nb + b].d, _mm256_cvtepi32_ps(A)));
          acc[g][t] = _mm256_add_ps(acc[g][t], kpack::rounded(_mm256_mul_ps(_mm256_set1_ps(a[t][b].d), dA)));
        }
    }
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0 + 8 * g, acc[g][t]);
  }
};

// IQ4_XS's units: maddubs(|v|, a ^ m), widened by the madd with the
// sub-block's scale pair; the sum starts at corr.
struct KindXs {
  using Prep = XsPrep;
  static __m256i start(const XsPrep& P) { return P.corr; }
  static __m256i finish(const XsPrep&, const BlockQ8K&, __m256i isum) { return isum; }
  template <int G, int T>
  static void sums(const XsPrep* P, int64_t nb, int64_t b, const BlockQ8K* const* a, __m256i (*isum)[T]) {
    for (int j = 0; j < 8; ++j) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const int c = 8 * j + k;
        __m256i wu[G], m[G];
        for (int g = 0; g < G; ++g) {
          wu[g] = P[g * nb + b].u[c];
          m[g] = P[g * nb + b].m[c];
        }
        for (int t = 0; t < T; ++t) {
          const __m256i av = kpack::act4(a[t][b], c);
          for (int g = 0; g < G; ++g) {
            const __m256i p = _mm256_maddubs_epi16(wu[g], _mm256_xor_si256(av, m[g]));
            isum[g][t] = _mm256_add_epi32(isum[g][t], _mm256_madd_epi16(p, P[g * nb + b].sc[j]));
            asm("" : "+x"(isum[g][t]));  // one running sum each
          }
        }
      }
    }
  }
};

void gemm_iq4xs(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                float* y) {
  static const GemmFn sign_form = gemm_kernel_kpack_avx2(GgmlType::IQ4_XS);
  if (t1 - t0 < kPrepMin) return sign_form(W, xa, xs, r0, r1, t0, t1, y);
  gemm_prepared<BlockIQ4_XSx8, QK_K, XsPrep, iq4xs_prepare, TileK<KindXs>>(W, xa, xs, r0, r1, t0, t1, y);
}

// ---- Q3_Kx8 prefill ------------------------------------------------------------
// kpack's sums (matmul_kpack_avx2.cpp: element vector c of sub-block S =
// c / 4, u = low two bits + 4 x high bit in 0..7, int16 sums of a
// sub-block's 4 maddubs <= 4*2*7*127, madd with its scale pair, minus 4 x
// sum_S sc_S bsums_S, then kpack's f32 steps: the reference's bits) over
// super-blocks prepared once per call: u unpacked to bytes, the scale pairs
// as vectors. Tiles of two row groups x 2 tokens share each broadcast, as
// the xor-form ones (gemm_prepared).
struct Q3Prep {
  __m256i u[64];  // per element vector
  __m256i sc[16]; // dword i: (sc_i, sc_i) of sub-block S
  const BlockQ3_Kx8* B;  // for the offset term (kpack::q6k_offset)
  __m256 d;
};

void q3k_prepare(const BlockQ3_Kx8* w, int64_t nb, Q3Prep* P) {
  const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
  for (int64_t b = 0; b < nb; ++b) {
    for (int c = 0; c < 64; ++c) {
      const int S = c / 4, Q = S / 4, J = 2 * Q + (S % 4) / 2;
      const __m256i l = _mm256_loadu_si256((const __m256i*)w[b].ql[c % 16]);
      const __m256i h = _mm256_loadu_si256((const __m256i*)w[b].qh[c % 8]);
      // bit J to bit 2 (16-bit shifts: what crosses a byte is masked off)
      const __m256i hb = J <= 2 ? _mm256_slli_epi16(h, 2 - J) : _mm256_srli_epi16(h, J - 2);
      P[b].u[c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 2 * Q), m3), _mm256_and_si256(hb, m4));
    }
    for (int S = 0; S < 16; ++S) P[b].sc[S] = kpack::q6k_scale(w[b], S);
    P[b].B = &w[b];
    P[b].d = kpack::load_d8(w[b].d);
  }
}

// Q3_K's units: maddubs(u, a) in int16 over a sub-block's 4 element
// vectors, then the madd with its scale pair; A = the sums - 4 x sum_S sc_S
// bsums_S.
struct KindQ3 {
  using Prep = Q3Prep;
  static __m256i start(const Q3Prep&) { return _mm256_setzero_si256(); }
  static __m256i finish(const Q3Prep& P, const BlockQ8K& a, __m256i isum) {
    return _mm256_sub_epi32(isum, _mm256_slli_epi32(kpack::q6k_offset(*P.B, a), 2));
  }
  template <int G, int T>
  static void sums(const Q3Prep* P, int64_t nb, int64_t b, const BlockQ8K* const* a, __m256i (*isum)[T]) {
#pragma GCC unroll 2
    for (int S = 0; S < 16; ++S) {
      __m256i p[G][T];
      for (int g = 0; g < G; ++g)
        for (int t = 0; t < T; ++t) p[g][t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * S + k;
        __m256i wu[G];
        for (int g = 0; g < G; ++g) wu[g] = P[g * nb + b].u[c];
        for (int t = 0; t < T; ++t) {
          const __m256i av = kpack::act4(a[t][b], c);
          for (int g = 0; g < G; ++g) {
            p[g][t] = _mm256_add_epi16(p[g][t], _mm256_maddubs_epi16(wu[g], av));
            asm("" : "+x"(p[g][t]));  // one running sum each
          }
        }
      }
      for (int g = 0; g < G; ++g)
        for (int t = 0; t < T; ++t)
          isum[g][t] = _mm256_add_epi32(isum[g][t], _mm256_madd_epi16(p[g][t], P[g * nb + b].sc[S]));
    }
  }
};

void gemm_q3k(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  static const GemmFn kpack_tiles = gemm_kernel_kpack_avx2(GgmlType::Q3_K);
  if (t1 - t0 < kPrepMin) return kpack_tiles(W, xa, xs, r0, r1, t0, t1, y);
  gemm_prepared<BlockQ3_Kx8, QK_K, Q3Prep, q3k_prepare, TileK<KindQ3>>(W, xa, xs, r0, r1, t0, t1, y);
}

// ---- F16 and BF16 x8 (element-interleaved) -------------------------------
// Lane i of an accumulator is row 8g+i, and every output is one fma chain
// over k = 0..cols-1 in order: the same for every tile shape, so
// batch-invariant. Prefill tiles are 2 groups x 4 or 6 tokens (8 or 12
// independent chains hide the fma latency); single tokens take up to 4
// groups at once, which keeps one fma per cycle going, more than memory can
// feed. The loops go by pairs of columns (cols is even: packable()), which
// BF16's layout stores in one 32-byte load.
struct ColsF16 {  // [cols][8] fp16 per group
  using Elem = fp16_t;
  template <int kOdd>  // column k + kOdd, k even (even: column k's, for BF16)
  static __m256 col(const fp16_t* g, int64_t k, __m256 /*even*/) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(g + (k + kOdd) * kPackRows)));
  }
};
// [cols/2][8][2] bf16 per group: bf16 -> f32 is a 16-bit shift. Column k
// is the low halves shifted up; column k + 1 the top halves, blended with
// column k's zero low halves: no constant register (the 2 x 6 prefill tile
// needs all 16; masked by an and, GCC spills 4 of its accumulators, 1.27x
// slower, and two shifts compete with the fmas; with the blend it runs
// within 5 % of F16's).
struct ColsBF16 {
  using Elem = bf16_t;
  template <int kOdd>
  static __m256 col(const bf16_t* g, int64_t k, __m256 even) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(g + k * kPackRows));  // columns k, k + 1
    if constexpr (kOdd) return _mm256_castsi256_ps(_mm256_blend_epi16(_mm256_castps_si256(even), v, 0xaa));
    else return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
};

template <class C, int G, int T>  // G groups of 8 rows, T tokens
void tile_x8f(const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
              int64_t r0, float* y) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = (const float*)(xa + (t0 + t) * xs);
  const size_t gs = (size_t)cols * kPackRows;  // elements per group
  __m256 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
  __m256 wv[G];  // the last column's
  for (int g = 0; g < G; ++g) wv[g] = _mm256_setzero_ps();
  auto step = [&]<int kOdd>(int64_t k) {
    for (int g = 0; g < G; ++g) wv[g] = C::template col<kOdd>(w + g * gs, k, wv[g]);
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x[t] + k + kOdd);
      for (int g = 0; g < G; ++g) acc[g][t] = _mm256_fmadd_ps(wv[g], xb, acc[g][t]);
    }
  };
  for (int64_t k = 0; k < cols; k += 2) {
    step.template operator()<0>(k);
    step.template operator()<1>(k);
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + (t0 + t) * rows + r0 + 8 * g, acc[g][t]);
}

// The prefill tiles, 2 groups x T tokens (T = 4 or 6), with the
// accumulators spelled out: as an array of this size GCC 12 stores them to
// the stack every iteration. T = 6 gives 12 independent chains, slack over
// the 4-cycle fma latency (8 chains are exactly at the limit); T = 4 takes
// the remainder of a 64-token block.
template <class C, int T>
void tile_x8f_2xT(const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                  int64_t r0, float* y) {
  static_assert(T == 4 || T == 6);
  const float* x0 = (const float*)(xa + t0 * xs);
  const float* x1 = (const float*)(xa + (t0 + 1) * xs);
  const float* x2 = (const float*)(xa + (t0 + 2) * xs);
  const float* x3 = (const float*)(xa + (t0 + 3) * xs);
  const float* x4 = T > 4 ? (const float*)(xa + (t0 + 4) * xs) : x0;
  const float* x5 = T > 4 ? (const float*)(xa + (t0 + 5) * xs) : x0;
  const typename C::Elem* w1 = w + (size_t)cols * kPackRows;
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00;  // group 0
  __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00, a15 = a00;                 // group 1
  __m256 w0v = _mm256_setzero_ps(), w1v = w0v;  // the last column's (BF16 derives column k + 1 from k's)
  auto step = [&]<int kOdd>(int64_t k) {
    w0v = C::template col<kOdd>(w, k, w0v);
    w1v = C::template col<kOdd>(w1, k, w1v);
    const int64_t j = k + kOdd;
    __m256 xb = _mm256_broadcast_ss(x0 + j);
    a00 = _mm256_fmadd_ps(w0v, xb, a00);
    a10 = _mm256_fmadd_ps(w1v, xb, a10);
    xb = _mm256_broadcast_ss(x1 + j);
    a01 = _mm256_fmadd_ps(w0v, xb, a01);
    a11 = _mm256_fmadd_ps(w1v, xb, a11);
    xb = _mm256_broadcast_ss(x2 + j);
    a02 = _mm256_fmadd_ps(w0v, xb, a02);
    a12 = _mm256_fmadd_ps(w1v, xb, a12);
    xb = _mm256_broadcast_ss(x3 + j);
    a03 = _mm256_fmadd_ps(w0v, xb, a03);
    a13 = _mm256_fmadd_ps(w1v, xb, a13);
    if constexpr (T > 4) {
      xb = _mm256_broadcast_ss(x4 + j);
      a04 = _mm256_fmadd_ps(w0v, xb, a04);
      a14 = _mm256_fmadd_ps(w1v, xb, a14);
      xb = _mm256_broadcast_ss(x5 + j);
      a05 = _mm256_fmadd_ps(w0v, xb, a05);
      a15 = _mm256_fmadd_ps(w1v, xb, a15);
    }
  };
  for (int64_t k = 0; k < cols; k += 2) {
    step.template operator()<0>(k);
    step.template operator()<1>(k);
  }
  float* o = y + t0 * rows + r0;
  const __m256 g0[6] = {a00, a01, a02, a03, a04, a05}, g1[6] = {a10, a11, a12, a13, a14, a15};
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(o + t * rows, g0[t]);
    _mm256_storeu_ps(o + t * rows + 8, g1[t]);
  }
}

template <class C>
void x8f_tile1(int n_groups, const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t,
               int64_t rows, int64_t r, float* y) {
  switch (n_groups) {
    case 1: return tile_x8f<C, 1, 1>(w, cols, xa, xs, t, rows, r, y);
    case 2: return tile_x8f<C, 2, 1>(w, cols, xa, xs, t, rows, r, y);
    case 3: return tile_x8f<C, 3, 1>(w, cols, xa, xs, t, rows, r, y);
    default: return tile_x8f<C, 4, 1>(w, cols, xa, xs, t, rows, r, y);
  }
}

// Tiles of T tokens over the ng groups from row r: pairs, then a single group.
template <class C, int T>
void x8f_tiles(int ng, const typename C::Elem* base, const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t t,
               int64_t r, float* y) {
  for (int g = 0; g < ng; g += 2) {
    const int64_t rg = r + g * kPackRows;
    if (ng - g >= 2) tile_x8f_2xT<C, T>(base + rg * W.cols, W.cols, xa, xs, t, W.rows, rg, y);
    else tile_x8f<C, 1, T>(base + rg * W.cols, W.cols, xa, xs, t, W.rows, rg, y);
  }
}

template <class C>
void gemm_x8f(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  const typename C::Elem* base = (const typename C::Elem*)W.data;
  const int64_t r_whole = r0 + (r1 - r0) / kPackRows * kPackRows;  // rows of whole groups
  if (r_whole < r1)  // W's last group is partial: token by token into 8 floats, the valid ones copied out
    for (int64_t t = t0; t < t1; ++t) {
      float tmp[kPackRows];
      tile_x8f<C, 1, 1>(base + r_whole * W.cols, W.cols, xa + t * xs, xs, 0, kPackRows, 0, tmp);
      std::memcpy(y + t * W.rows + r_whole, tmp, (r1 - r_whole) * sizeof(float));
    }
  r1 = r_whole;
  for (int64_t r = r0; r < r1; r += 4 * kPackRows) {  // blocks of up to 4 groups
    const int ng = (int)std::min<int64_t>(4, (r1 - r) / kPackRows);
    int64_t t = t0;
    // Token tiles of 6, then one of 4, then single tokens; pairs of groups,
    // then a single group. Every output is the same fma chain in all of them.
    for (; t + 6 <= t1; t += 6) x8f_tiles<C, 6>(ng, base, W, xa, xs, t, r, y);
    for (; t + 4 <= t1; t += 4) x8f_tiles<C, 4>(ng, base, W, xa, xs, t, r, y);
    for (; t < t1; ++t) x8f_tile1<C>(ng, base + r * W.cols, W.cols, xa, xs, t, W.rows, r, y);
  }
}

// Q4_0, Q5_0, IQ4_NL: matmul_nibu_avx2.cpp (two-group tiles; Q4_0 and Q5_0
// decode there too, one group at a time on their unsigned q: 1.3-1.4x the
// sign form's compute rate, kvforge_microbench BM_Decode1), IQ4_NL prefill
// the prepared xor-form tiles and its decode the one-group tiles above
// (nibu's sign-form one-group tile was ~10 % slower). All give the scalar
// reference's bits, so which one a call takes changes no result.
constexpr int64_t kNibuMinTokens = 4;

template <GgmlType kType>
void gemm_signed_nib(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                     int64_t t1, float* y) {
  static const GemmFn nibu = gemm_kernel_nibu_avx2(kType);
  if (kType == GgmlType::IQ4_NL && t1 - t0 >= kPrepMin)
    gemm_prepared<BlockIQ4_NLx8, QK, Q8Prep, iq4nl_prepare, TileQ8Xor<StepRef>>(W, xa, xs, r0, r1, t0, t1, y);
  else if (kType == GgmlType::IQ4_NL && t1 - t0 < kNibuMinTokens)
    nibpack::gemm_x8n<kTNib, NibSumsAvx2, kType>(W, xa, xs, r0, r1, t0, t1, y);
  else nibu(W, xa, xs, r0, r1, t0, t1, y);
}

}  // namespace

GemmFn gemm_kernel_packed_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return gemm_q8_0x8;
    case GgmlType::F16: return gemm_x8f<ColsF16>;
    case GgmlType::BF16: return gemm_x8f<ColsBF16>;
    case GgmlType::Q4_0: return gemm_signed_nib<GgmlType::Q4_0>;
    case GgmlType::Q5_0: return gemm_signed_nib<GgmlType::Q5_0>;
    case GgmlType::IQ4_NL: return gemm_signed_nib<GgmlType::IQ4_NL>;
    case GgmlType::IQ4_XS: return gemm_iq4xs;
    case GgmlType::Q3_K: return gemm_q3k;
    default: break;
  }
  if (GemmFn f = nibpack::gemm_kernel<kTNib, NibSumsAvx2>(t)) return f;  // Q4_1, Q5_1
  return gemm_kernel_kpack_avx2(t);  // Q3_K..Q6_K (matmul_kpack_avx2.cpp) or nullptr
}

}  // namespace kvforge
