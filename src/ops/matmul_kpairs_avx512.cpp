// AVX-512 prefill kernels of the x8 K-quant layouts (Q2_K .. Q6_K, IQ4_XS;
// ops/weight_pack.h): the prepared pair tiles of matmul_pairs_avx512.cpp on
// super-blocks. A zmm holds one element vector of two row groups (16 rows),
// prepared once per call as u8 (Q4_K, Q5_K, Q2_K: q; Q6_K q + 32, Q3_K
// q + 4: their stored unsigned u; IQ4_XS the table value + 128), with each
// sub-block's scale as 16 int32 and the mins as int16 pairs. Per sub-block
// and (pair, token) the dots of its element vectors accumulate by dpbusd
// against activations broadcast from memory, starting from -o x the
// sub-block's activation sum (o = 32, 4, 128 for Q6_K, Q3_K, IQ4_XS: one
// table per call from the bsums), so each is its exact int32 dot of q a;
// one vpmulld by the scale adds it to A. The mins' B = sum m bsums (Q2_K,
// Q4_K, Q5_K) by vpdpwssd. Then kpack_x8.h's f32 steps on 16 lanes: the
// scalar reference's bits, as the AVX2 and one-group AVX-512 kernels, the
// same chain per (row, token) in any tile. Integer ranges: a sub-block's
// dot <= 32 * 241 * 128 (IQ4_XS) plus its start, times the scale, 8 or 16
// of them: below 2^31, as in the reference.
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cstring>
#include <vector>

#include "ops/kpack_x8.h"
#include "ops/matmul_kernels.h"
#include "ops/pair_tiles_avx512.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

// One super-block of a pair of row groups, prepared (low halves: group 2p).
struct KPairBlock {
  __m512i u[64];  // element vectors, u8
  __m512i sc[16]; // sub-block scales, int32 (8 used by Q4_K, Q5_K, IQ4_XS)
  __m512i mn[8];  // Q2_K, Q4_K, Q5_K: the mins of 16-element sub-blocks 2p, 2p+1 as int16 (low, high)
  __m512 d, dmin;
};

struct Start {  // -o x one sub-block's activation sum
  int32_t v;
};

// Dword i = the 16-bit little-endian pair of bytes 2i, 2i+1 of p (8 rows
// x 2 bytes: the scale pairs of the x8 blocks), zero-extended.
inline __m256i pairs16(const void* p) { return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)); }
// Sign-extended byte 0 or 1 of each dword.
inline __m256i sbyte(__m256i v, int k) { return _mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * k), 24); }

// Per type: sub-blocks (of 256 / kSubs elements), offset o of u, whether a
// min term follows, and the 256-bit halves of one group's vectors.
template <class X>
struct KKind;

template <>
struct KKind<BlockQ4_Kx8> {
  static constexpr int kSubs = 8, kOffset = 0;
  static constexpr bool kMin = true;
  static __m256i elem(const BlockQ4_Kx8& B, int c) {
    const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[c % 32]);
    return _mm256_and_si256(c < 32 ? raw : _mm256_srli_epi16(raw, 4), _mm256_set1_epi8(15));
  }
  static __m256i scale(const BlockQ4_Kx8& B, int j) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)B.sc[j]));
  }
  static __m256i mins(const BlockQ4_Kx8& B, int p) {  // sub-blocks 2p, 2p+1 of 16 elements: both m_p
    const __m256i v = pairs16(B.mn[p / 2]);
    const __m256i m = p % 2 ? _mm256_srli_epi32(v, 8) : _mm256_and_si256(v, _mm256_set1_epi32(0xFF));
    return _mm256_or_si256(m, _mm256_slli_epi32(m, 16));
  }
};
template <>
struct KKind<BlockQ5_Kx8> {
  static constexpr int kSubs = 8, kOffset = 0;
  static constexpr bool kMin = true;
  static __m256i elem(const BlockQ5_Kx8& B, int c) {
    const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[c % 8]);  // bit c / 8: the fifth bit
    const int J = c / 8;
    const __m256i hb = J <= 4 ? _mm256_slli_epi16(h, 4 - J) : _mm256_srli_epi16(h, J - 4);
    return _mm256_or_si256(KKind<BlockQ4_Kx8>::elem(B, c), _mm256_and_si256(hb, _mm256_set1_epi8(16)));
  }
  static __m256i scale(const BlockQ5_Kx8& B, int j) { return KKind<BlockQ4_Kx8>::scale(B, j); }
  static __m256i mins(const BlockQ5_Kx8& B, int p) { return KKind<BlockQ4_Kx8>::mins(B, p); }
};
template <>
struct KKind<BlockQ6_Kx8> {
  static constexpr int kSubs = 16, kOffset = 32;
  static constexpr bool kMin = false;
  static __m256i elem(const BlockQ6_Kx8& B, int c) {
    const __m256i l = _mm256_loadu_si256((const __m256i*)B.ql[c % 32]);
    const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[c % 16]);
    const int k = c / 16;  // bits 2k, 2k+1 to 4, 5
    const __m256i hs = k == 0 ? _mm256_slli_epi16(h, 4) : k == 1 ? _mm256_slli_epi16(h, 2)
                     : k == 2 ? h : _mm256_srli_epi16(h, 2);
    const __m256i lo = _mm256_and_si256(c < 32 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(15));
    return _mm256_or_si256(lo, _mm256_and_si256(hs, _mm256_set1_epi8(0x30)));
  }
  static __m256i scale(const BlockQ6_Kx8& B, int s) { return sbyte(pairs16(B.sc[s / 2]), s % 2); }
};
template <>
struct KKind<BlockQ3_Kx8> {
  static constexpr int kSubs = 16, kOffset = 4;
  static constexpr bool kMin = false;
  static __m256i elem(const BlockQ3_Kx8& B, int c) {
    const __m256i l = _mm256_loadu_si256((const __m256i*)B.ql[c % 16]);
    const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[c % 8]);
    const int Q = c / 16, J = c / 8;  // low bits 2Q, 2Q+1; hmask bit J to bit 2
    const __m256i hb = J <= 2 ? _mm256_slli_epi16(h, 2 - J) : _mm256_srli_epi16(h, J - 2);
    return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 2 * Q), _mm256_set1_epi8(3)),
                           _mm256_and_si256(hb, _mm256_set1_epi8(4)));
  }
  static __m256i scale(const BlockQ3_Kx8& B, int s) { return sbyte(pairs16(B.sc[s / 2]), s % 2); }
};
template <>
struct KKind<BlockQ2_Kx8> {
  static constexpr int kSubs = 16, kOffset = 0;
  static constexpr bool kMin = true;
  static __m256i elem(const BlockQ2_Kx8& B, int c) {
    const __m256i l = _mm256_loadu_si256((const __m256i*)B.qs[c % 16]);
    return _mm256_and_si256(_mm256_srli_epi16(l, 2 * (c / 16)), _mm256_set1_epi8(3));
  }
  static __m256i scale(const BlockQ2_Kx8& B, int s) {
    return _mm256_and_si256(_mm256_srli_epi32(pairs16(B.sc[s / 2]), 8 * (s % 2)), _mm256_set1_epi32(15));
  }
  static __m256i mins(const BlockQ2_Kx8& B, int p) {  // high nibbles of the scale bytes of sub-blocks 2p, 2p+1
    const __m256i v = pairs16(B.sc[p]);
    return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(v, 4), _mm256_set1_epi32(15)),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(v, 12), _mm256_set1_epi32(15)), 16));
  }
};
template <>
struct KKind<BlockIQ4_XSx8> {
  static constexpr int kSubs = 8, kOffset = 128;
  static constexpr bool kMin = false;
  static __m256i elem(const BlockIQ4_XSx8& B, int c) {
    const __m256i grid = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues)),
                                          _mm256_set1_epi8((char)0x80));
    const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[c % 32]);
    return _mm256_shuffle_epi8(grid, _mm256_and_si256(c < 32 ? raw : _mm256_srli_epi16(raw, 4), _mm256_set1_epi8(15)));
  }
  static __m256i scale(const BlockIQ4_XSx8& B, int j) { return sbyte(pairs16(B.sc[j / 2]), j % 2); }
};

inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
inline __m512 join_d(const fp16_t* lo, const fp16_t* hi) {
  return cvtph_ps512(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)lo)),
                                             _mm_loadu_si128((const __m128i*)hi), 1));
}

template <class X>
void prepare(const X* w0, const X* w1, int64_t nb, KPairBlock* P) {
  using K = KKind<X>;
  for (int64_t b = 0; b < nb; ++b) {
    for (int c = 0; c < 64; ++c) P[b].u[c] = join(K::elem(w0[b], c), K::elem(w1[b], c));
    for (int s = 0; s < K::kSubs; ++s) P[b].sc[s] = join(K::scale(w0[b], s), K::scale(w1[b], s));
    if constexpr (K::kMin) {
      for (int p = 0; p < 8; ++p) P[b].mn[p] = join(K::mins(w0[b], p), K::mins(w1[b], p));
      P[b].dmin = join_d(w0[b].dmin, w1[b].dmin);
    }
    P[b].d = join_d(w0[b].d, w1[b].d);
  }
}

// S[((t - t0) nb + b) kSubs + s] = -o x the activation sum of sub-block s
// (the bsums of its 16 or 32 elements).
template <class X>
void sub_starts(const uint8_t* xa, size_t xs, int64_t t0, int64_t t1, int64_t nb, Start* S) {
  using K = KKind<X>;
  const __m256i o = _mm256_set1_epi32(-K::kOffset);
  for (int64_t t = t0; t < t1; ++t) {
    const BlockQ8K* a = (const BlockQ8K*)(xa + t * xs);
    for (int64_t b = 0; b < nb; ++b) {
      const __m128i lo = _mm_loadu_si128((const __m128i*)a[b].bsums), hi = _mm_loadu_si128((const __m128i*)(a[b].bsums + 8));
      __m256i* dst = (__m256i*)(S + ((t - t0) * nb + b) * K::kSubs);
      if constexpr (K::kSubs == 16) {
        _mm256_storeu_si256(dst, _mm256_mullo_epi32(_mm256_cvtepi16_epi32(lo), o));
        _mm256_storeu_si256(dst + 1, _mm256_mullo_epi32(_mm256_cvtepi16_epi32(hi), o));
      } else {  // pairs of bsums
        const __m128i one = _mm_set1_epi16(1);
        const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_madd_epi16(lo, one)), _mm_madd_epi16(hi, one), 1);
        _mm256_storeu_si256(dst, _mm256_mullo_epi32(v, o));
      }
    }
  }
}

inline __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// G pairs (P[g nb + b]) x T tokens from t0 on; rows from r0 on. kHalf: one
// group alone, only its 8 rows stored.
template <class X, int G, int T, bool kHalf>
[[gnu::noinline]] void tile(const KPairBlock* P, int64_t nb, const uint8_t* xa, size_t xs, const Start* S,
                            int64_t t0, int64_t ts, int64_t rows, int64_t r0, float* y) {
  using K = KKind<X>;
  constexpr int kEv = 64 / K::kSubs;  // element vectors per sub-block
  const BlockQ8K* a[T];
  for (int t = 0; t < T; ++t) a[t] = (const BlockQ8K*)(xa + (t0 + t) * xs);
  __m512 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i A[G][T];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < T; ++t) A[g][t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int s = 0; s < K::kSubs; ++s) {
      __m512i p[G][T];
      for (int t = 0; t < T; ++t) {
        const __m512i v = K::kOffset ? _mm512_set1_epi32(S[((t0 - ts + t) * nb + b) * K::kSubs + s].v)
                                     : _mm512_setzero_si512();
        for (int g = 0; g < G; ++g) p[g][t] = v;
      }
#pragma GCC unroll 8
      for (int k = 0; k < kEv; ++k) {
        const int c = kEv * s + k;
        __m512i w[G];
        for (int g = 0; g < G; ++g) w[g] = _mm512_load_si512((const void*)&P[g * nb + b].u[c]);
        for (int t = 0; t < T; ++t) {
          const __m512i av = bcast4(a[t][b].qs + 4 * c);
          for (int g = 0; g < G; ++g) p[g][t] = _mm512_dpbusd_epi32(p[g][t], w[g], av);
        }
      }
      for (int g = 0; g < G; ++g) {
        const __m512i sc = _mm512_load_si512((const void*)&P[g * nb + b].sc[s]);
        for (int t = 0; t < T; ++t) A[g][t] = _mm512_add_epi32(A[g][t], _mm512_mullo_epi32(p[g][t], sc));
      }
    }
    for (int g = 0; g < G; ++g) {
      const KPairBlock& B = P[g * nb + b];
      for (int t = 0; t < T; ++t) {
        const __m512 da = _mm512_set1_ps(a[t][b].d);
        const __m512 dA = rounded512(_mm512_mul_ps(B.d, cvtepi32_ps512(A[g][t])));
        if constexpr (K::kMin) {  // s += d_a * (d * A - dmin * B)
          __m512i m = _mm512_setzero_si512();
          for (int q = 0; q < 8; ++q) m = _mm512_dpwssd_epi32(m, B.mn[q], bcast4(a[t][b].bsums + 2 * q));
          const __m512 mB = rounded512(_mm512_mul_ps(B.dmin, cvtepi32_ps512(m)));
          acc[g][t] = _mm512_add_ps(acc[g][t], rounded512(_mm512_mul_ps(da, _mm512_sub_ps(dA, mB))));
        } else {  // s += d_a * (d * A)
          acc[g][t] = _mm512_add_ps(acc[g][t], rounded512(_mm512_mul_ps(da, dA)));
        }
      }
    }
  }
  store_tile<G, T, kHalf>(acc, y, rows, r0, t0);
}

constexpr int kTok = 4;  // tokens per tile

struct Scratch {
  std::vector<KPairBlock> prep;  // [2][nb]: the current pairs
  std::vector<Start> starts;     // [tokens][nb][kSubs]
};

// Per two pairs (32 rows): prepare, then every token; then a last pair,
// then a last group alone.
template <class X>
void gemm_kpairs(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                 int64_t t1, float* y) {
  using K = KKind<X>;
  const int64_t nb = W.cols / QK_K;
  const X* blocks = (const X*)W.data;
  thread_local Scratch sc;
  if ((int64_t)sc.prep.size() < 2 * nb) sc.prep.resize(2 * nb);
  if constexpr (K::kOffset != 0) {
    if ((int64_t)sc.starts.size() < (t1 - t0) * nb * K::kSubs) sc.starts.resize((t1 - t0) * nb * K::kSubs);
    sub_starts<X>(xa, xs, t0, t1, nb, sc.starts.data());
  }
  KPairBlock* P = sc.prep.data();
  const Start* S = sc.starts.data();
  auto group = [&](int64_t r) { return blocks + (r / kPackRows) * nb; };
  walk_pairs(
      r0, r1, [&](int64_t ra, int64_t rb, int slot) { prepare<X>(group(ra), group(rb), nb, P + slot * nb); },
      [&](auto G, auto half, int64_t r) {
        token_tiles<kTok>(t0, t1, [&](auto T, int64_t t) {
          tile<X, decltype(G)::value, decltype(T)::value, decltype(half)::value>(P, nb, xa, xs, S, t, t0, W.rows,
                                                                                  r, y);
        });
      });
}

}  // namespace

GemmFn gemm_kernel_kpairs_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return gemm_kpairs<BlockQ2_Kx8>;
    case GgmlType::Q3_K: return gemm_kpairs<BlockQ3_Kx8>;
    case GgmlType::Q4_K: return gemm_kpairs<BlockQ4_Kx8>;
    case GgmlType::Q5_K: return gemm_kpairs<BlockQ5_Kx8>;
    case GgmlType::Q6_K: return gemm_kpairs<BlockQ6_Kx8>;
    case GgmlType::IQ4_XS: return gemm_kpairs<BlockIQ4_XSx8>;
    default: return nullptr;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
