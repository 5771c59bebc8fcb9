// AVX-512 prefill kernels of the x8 layouts with 32-element blocks (Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; ops/weight_pack.h) for matmul tasks of
// more than 16 tokens; fewer take the x16 or the one-group tiles
// (by_tokens in matmul_packed_avx512.cpp).
//
// The one-group tiles put two element vectors of one group (8 rows) in a
// zmm, so each dpbusd needs its activations permuted into place. Here a zmm
// holds one element vector of two groups (16 rows: group 2p in the low
// half, 2p + 1 in the high one), so the 4 activations it meets are one
// dword broadcast straight from memory, and one dpbusd is 64 products with
// no other work. The pairs are prepared once per call (a task's rows of one
// weight matrix) for all its tokens: the element vectors joined and turned
// unsigned, u = w + o (Q8_0, IQ4_NL o = 128; Q4_0 8; Q5_0 16; Q4_1, Q5_1
// 0: their q), d (and m) as 16 f32. dpbusd(u, a) = sum w a + o sum a, so
// each block's sum starts at -o x (the block's activation sum), one table
// per call, and is the exact int32 dot (|lane| <= 32 * 255 * 128).
// Then, per block and row, the f32 steps of the other kernels on 16 lanes
// (Q8_0 one fma with d_w d_a; the nibble types the scalar reference's,
// ops/nibpack_x8.h): bit for bit the AVX2 and one-group AVX-512 kernels,
// and the same chain per (row, token) in any tile (batch invariance).
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cstring>
#include <vector>

#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/pair_tiles_avx512.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

// One block of a pair of row groups, prepared.
struct PairBlock {
  __m512i u[8];  // element vector c of both groups (low half 2p, high 2p + 1), w + o as u8
  __m512 d;      // d_w, 16 rows
  __m512 m;      // m_w (Q4_1, Q5_1)
};

// The sum of a block's 32 activations (the start of its dots is -o x it).
struct Start {
  int32_t v;
};

// Per weight type: its x8 block, o, and its 8 element vectors as w + o.
template <GgmlType kType>
struct Kind {
  using Nib = nibpack::Nib<kType>;
  using Block = typename Nib::Block;
  static constexpr int kOffset = kType == GgmlType::IQ4_NL ? 128 : Nib::kOffset;
  static void elems(const Block& B, __m256i* e) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i qh = _mm256_setzero_si256(), grid = _mm256_setzero_si256();
    if constexpr (Nib::kQ5) qh = _mm256_loadu_si256((const __m256i*)B.qh);
    if constexpr (Nib::kTable)
      grid = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues)),
                              _mm256_set1_epi8((char)0x80));
    for (int k = 0; k < 4; ++k) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[k]);
      __m256i q[2] = {_mm256_and_si256(raw, m4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)};
      for (int h = 0; h < 2; ++h) {
        if constexpr (Nib::kQ5) q[h] = _mm256_or_si256(q[h], nibpack::q5_fifth(qh, k + 4 * h));
        if constexpr (Nib::kTable) q[h] = _mm256_shuffle_epi8(grid, q[h]);
        e[k + 4 * h] = q[h];
      }
    }
  }
};
template <>
struct Kind<GgmlType::Q8_0> {
  using Block = BlockQ8_0x8;
  static constexpr int kOffset = 128;
  static void elems(const Block& B, __m256i* e) {
    for (int c = 0; c < 8; ++c)
      e[c] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)B.qs[c]), _mm256_set1_epi8((char)0x80));
  }
};

inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
inline __m512 join_d(const fp16_t* lo, const fp16_t* hi) {
  return cvtph_ps512(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)lo)),
                                             _mm_loadu_si128((const __m128i*)hi), 1));
}

// The nb blocks of groups w0 (low halves) and w1 (high) into P.
template <GgmlType kType>
void prepare(const typename Kind<kType>::Block* w0, const typename Kind<kType>::Block* w1, int64_t nb,
             PairBlock* P) {
  for (int64_t b = 0; b < nb; ++b) {
    __m256i e0[8], e1[8];
    Kind<kType>::elems(w0[b], e0);
    Kind<kType>::elems(w1[b], e1);
    for (int c = 0; c < 8; ++c) P[b].u[c] = join(e0[c], e1[c]);
    P[b].d = join_d(w0[b].d, w1[b].d);
    if constexpr (kType == GgmlType::Q4_1 || kType == GgmlType::Q5_1) P[b].m = join_d(w0[b].m, w1[b].m);
  }
}

// S[(t - t0) nb + b] = -o x the sum of token t's block b (o > 0 only).
void block_starts(const uint8_t* xa, size_t xs, int64_t t0, int64_t t1, int64_t nb, int o, Start* S) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t t = t0; t < t1; ++t) {
    const BlockQ8A* a = (const BlockQ8A*)(xa + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, _mm256_loadu_si256((const __m256i*)a[b].qs));
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
      h = _mm_add_epi32(h, _mm_srli_si128(h, 4));
      S[(t - t0) * nb + b].v = -o * _mm_cvtsi128_si32(h);
    }
  }
}

// G pairs (P[g nb + b]) x T tokens from t0 on; rows from r0 on (16 per
// pair). kHalf: one group alone (both halves the same), only its 8 rows stored.
template <GgmlType kType, int G, int T, bool kHalf>
[[gnu::noinline]] void tile(const PairBlock* P, int64_t nb, const uint8_t* xa, size_t xs, const Start* S,
                            int64_t t0, int64_t ts, int64_t rows, int64_t r0, float* y) {
  constexpr bool kMin = kType == GgmlType::Q4_1 || kType == GgmlType::Q5_1;
  constexpr bool kOff = Kind<kType>::kOffset != 0;
  const BlockQ8A* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8A*)(xa + (t0 + t) * xs);
  const Start* st[T];  // token t's starts
  for (int t = 0; t < T; ++t) st[t] = S + (t0 - ts + t) * nb;
  __m512 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i s[G][T];
    for (int t = 0; t < T; ++t) {
      const __m512i v = kOff ? _mm512_set1_epi32(st[t][b].v) : _mm512_setzero_si512();
      for (int g = 0; g < G; ++g) s[g][t] = v;
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m512i w[G];
      for (int g = 0; g < G; ++g) w[g] = _mm512_load_si512((const void*)&P[g * nb + b].u[c]);
      for (int t = 0; t < T; ++t) {
        int32_t a4;
        std::memcpy(&a4, a[t][b].qs + 4 * c, 4);
        const __m512i av = _mm512_set1_epi32(a4);
        for (int g = 0; g < G; ++g) s[g][t] = _mm512_dpbusd_epi32(s[g][t], w[g], av);
      }
    }
    for (int g = 0; g < G; ++g) {
      const __m512 dw = P[g * nb + b].d;
      for (int t = 0; t < T; ++t) {
        const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(a[t][b].d));
        const __m512 isum = cvtepi32_ps512(s[g][t]);
        if constexpr (kType == GgmlType::Q8_0) {
          acc[g][t] = _mm512_fmadd_ps(isum, dd, acc[g][t]);
        } else {  // s += isum * (d_w * d_a) (+ m_w * s_a), each product rounded
          __m512 v = rounded512(_mm512_mul_ps(isum, rounded512(dd)));
          if constexpr (kMin)
            v = rounded512(_mm512_add_ps(v, rounded512(_mm512_mul_ps(P[g * nb + b].m, _mm512_set1_ps(a[t][b].s)))));
          acc[g][t] = _mm512_add_ps(acc[g][t], v);
        }
      }
    }
  }
  store_tile<G, T, kHalf>(acc, y, rows, r0, t0);
}

constexpr int kTok = 4;  // tokens per tile

struct Scratch {
  std::vector<PairBlock> prep;  // [2][nb]: the current pairs
  std::vector<Start> starts;    // [tokens][nb]
};

// Per two pairs (32 rows): prepare, then every token; then a last pair,
// then a last group alone.
template <GgmlType kType>
void gemm_pairs(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
                float* y) {
  using Block = typename Kind<kType>::Block;
  const int64_t nb = W.cols / QK;
  const Block* blocks = (const Block*)W.data;
  thread_local Scratch sc;
  if ((int64_t)sc.prep.size() < 2 * nb) sc.prep.resize(2 * nb);
  if constexpr (Kind<kType>::kOffset != 0) {
    if ((int64_t)sc.starts.size() < (t1 - t0) * nb) sc.starts.resize((t1 - t0) * nb);
    block_starts(xa, xs, t0, t1, nb, Kind<kType>::kOffset, sc.starts.data());
  }
  PairBlock* P = sc.prep.data();
  const Start* S = sc.starts.data();
  auto group = [&](int64_t r) { return blocks + (r / kPackRows) * nb; };
  walk_pairs(
      r0, r1, [&](int64_t ra, int64_t rb, int slot) { prepare<kType>(group(ra), group(rb), nb, P + slot * nb); },
      [&](auto G, auto half, int64_t r) {
        token_tiles<kTok>(t0, t1, [&](auto T, int64_t t) {
          tile<kType, decltype(G)::value, decltype(T)::value, decltype(half)::value>(P, nb, xa, xs, S, t, t0,
                                                                                      W.rows, r, y);
        });
      });
}

}  // namespace

GemmFn gemm_kernel_pairs_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return gemm_pairs<GgmlType::Q8_0>;
    case GgmlType::Q4_0: return gemm_pairs<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return gemm_pairs<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return gemm_pairs<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return gemm_pairs<GgmlType::Q5_1>;
    case GgmlType::IQ4_NL: return gemm_pairs<GgmlType::IQ4_NL>;
    default: return gemm_kernel_kpairs_avx512(t);  // Q2_K..Q6_K, IQ4_XS or nullptr
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
