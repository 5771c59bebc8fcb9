// AVX-512 VNNI tiles of two 8-row groups for calls of a few tokens (a
// server's batched decode step: one token per sequence), on the x8 layouts
// of Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL and Q8_0 (ops/weight_pack.h).
//
// The tiles of matmul_packed_avx512.cpp hold one group per zmm as two
// element vectors (E_c | E_c+1), so every dpbusd needs the block's
// activations permuted into that shape (one vpermd per product vector and
// token) and the halves are added at the end of each block. Here a zmm holds
// the same element vector E_c of two groups (lanes 0..7: rows of group g,
// 8..15: of group g + 1), so all 16 lanes meet the same 4 activations and
// dpbusd takes them as a broadcast memory operand: per (token, pair of
// groups, block) 8 dpbusd and the f32 steps, on 16 rows at once. The
// weights of a block pair are unpacked once for up to 16 tokens.
//
// dpbusd multiplies unsigned by signed bytes: the activations are the signed
// side; Q4_1 (0..15) and Q5_1 (0..31) weights go in as they are, the signed
// ones as u = w + o (Q4_0: q, o = 8; Q5_0: q, o = 16; IQ4_NL: its table
// + 128, o = 128; Q8_0: q ^ 0x80 = q + 128, o = 128), and the block's dot
// is the dpbusd sum - o x (the sum of the block's activations), those sums
// computed once per call for its tokens. |lane| <= 32 * 255 * 128 < 2^31:
// the exact int32 dots of the other kernels. Then the same f32 steps lane
// by lane (nibble types: the scalar reference's, ops/nibpack_x8.h; Q8_0:
// one fma with d_w * d_a, as matmul_q8x8_avx2.cpp), so the results are
// bit-identical to the AVX2 and other AVX-512 kernels and batch invariant
// (one fixed chain per (row, token), whatever tile it sits in).
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cstring>

#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/pair_tiles_avx512.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kMaxT = 16;         // tokens per tile: the accumulators and 8 weight vectors fill the 32 registers
constexpr int64_t kChunk = 256;   // blocks per column chunk (the activation sums of a chunk sit on the stack)

// 32 bytes at p0 and 32 at p1 as the two halves of a zmm.
inline __m512i load_halves(const void* p0, const void* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)p0)),
                            _mm256_loadu_si256((const __m256i*)p1), 1);
}

// 8 fp16 at p0 and 8 at p1 as 16 f32.
inline __m512 load_d16(const fp16_t* p0, const fp16_t* p1) {
  return cvtph_ps512(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)p0)),
                                             _mm_loadu_si128((const __m128i*)p1), 1));
}

// The 4 activations 4c..4c+3 of a block in every dword (a memory broadcast).
inline __m512i act4(const int8_t* qs, int c) {
  int32_t v;
  std::memcpy(&v, qs + 4 * c, 4);
  return _mm512_set1_epi32(v);
}

// The sum of a block's 32 activations: sad over a + 128, less 32 * 128.
inline int32_t block_sum(const int8_t* qs) {
  const __m256i au = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)qs), _mm256_set1_epi8((char)0x80));
  const __m256i sad = _mm256_sad_epu8(au, _mm256_setzero_si256());  // 4 x 64-bit partial sums
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
  s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
  return _mm_cvtsi128_si32(s) - 32 * 128;
}

// The lines of a block from its start: over consecutive blocks, prefetches
// at most 64 bytes apart, so no line of the stream is skipped.
template <class Block>
inline void prefetch_block(const Block* p) {
  for (size_t l = 0; l < (sizeof(Block) + 63) / 64; ++l) _mm_prefetch((const char*)p + 64 * l, _MM_HINT_T0);
}

// IQ4_NL's table + 128 (1..241) as bytes for the shuffle.
struct Grid {
  alignas(16) uint8_t v[16];
};
constexpr Grid kIq4nlGridU = [] {
  Grid g{};
  for (int i = 0; i < 16; ++i) g.v[i] = (uint8_t)(kIq4nlValues[i] + 128);
  return g;
}();

// Per weight type: the x8 block, o, and the unsigned element vectors
// E_0..E_7 of a block of two groups (u[c]: E_c of B0 in the low half, of
// B1 in the high one).
template <GgmlType kType>
struct X16 {
  using L = nibpack::Nib<kType>;
  using Block = typename L::Block;
  static constexpr int kOffset = kType == GgmlType::IQ4_NL ? 128 : L::kOffset;
  static void unpack(const Block& B0, const Block& B1, __m512i u[8]) {
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int k = 0; k < 4; ++k) {  // qs[k]: E_k in the low nibbles, E_k+4 in the high ones
      const __m512i raw = load_halves(B0.qs[k], B1.qs[k]);
      u[k] = _mm512_and_si512(raw, m4);
      u[k + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    }
    if constexpr (L::kQ5) {  // bit c of every qh byte is E_c's fifth bit: 16
      const __m512i qh = load_halves(B0.qh, B1.qh);
      for (int c = 0; c < 8; ++c)
        u[c] = _mm512_or_si512(u[c], _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << c))),
                                                           _mm512_set1_epi8(16)));
    }
    if constexpr (L::kTable) {
      const __m512i grid = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i*)kIq4nlGridU.v));
      for (int c = 0; c < 8; ++c) u[c] = _mm512_shuffle_epi8(grid, u[c]);
    }
  }
  // The reference's steps (ops/nibpack_x8.h): s += isum * (d_w * d_a) (+ m_w * s_a), each rounded.
  static __m512 step(__m512 acc, __m512i isum, __m512 d, __m512 m, const BlockQ8A& a) {
    const __m512 dd = rounded512(_mm512_mul_ps(d, _mm512_set1_ps(a.d)));
    __m512 v = rounded512(_mm512_mul_ps(cvtepi32_ps512(isum), dd));
    if constexpr (L::kMin) v = rounded512(_mm512_add_ps(v, rounded512(_mm512_mul_ps(m, _mm512_set1_ps(a.s)))));
    return _mm512_add_ps(acc, v);
  }
  static __m512 mins(const Block& B0, const Block& B1) {
    if constexpr (L::kMin) return load_d16(B0.m, B1.m);
    return _mm512_setzero_ps();
  }
};

template <>
struct X16<GgmlType::Q8_0> {
  using Block = BlockQ8_0x8;
  static constexpr int kOffset = 128;
  static void unpack(const Block& B0, const Block& B1, __m512i u[8]) {
    for (int c = 0; c < 8; ++c) u[c] = _mm512_xor_si512(load_halves(B0.qs[c], B1.qs[c]), _mm512_set1_epi8((char)0x80));
  }
  // One fma per block with d_w * d_a (matmul_q8x8_avx2.cpp).
  static __m512 step(__m512 acc, __m512i isum, __m512 d, __m512, const BlockQ8A& a) {
    return _mm512_fmadd_ps(cvtepi32_ps512(isum), _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc);
  }
  static __m512 mins(const Block&, const Block&) { return _mm512_setzero_ps(); }
};

// T tokens x the 16 rows of groups w0, w1 (w1 == w0 for a lone last group:
// only its 8 rows are stored) over blocks [b0, b1). From b0 > 0 the chains
// resume from the partial sums left in out (an f32 store and reload is
// exact). corr[t * kChunk + b - b0] = -o x the sum of token t's block b.
// out + t * rows: token t's output of the first row. Per block b it
// prefetches block b of the next pair's groups p0, p1: in a decode step the
// weights come from memory, and with the hardware prefetcher alone the
// misses stood in series with the arithmetic (a step took the sum of its
// compute and memory times); one pair ahead is a few hundred ns.
template <GgmlType kType, int T>
[[gnu::noinline]] void tile(const typename X16<kType>::Block* w0, const typename X16<kType>::Block* w1,
                            const typename X16<kType>::Block* p0, const typename X16<kType>::Block* p1, int64_t b0,
                            int64_t b1, const BlockQ8A* const* a, const int32_t* corr, float* out, int64_t rows) {
  using X = X16<kType>;
  const bool pair = w1 != w0;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) {
    if (b0 == 0)
      acc[t] = _mm512_setzero_ps();
    else if (pair)
      acc[t] = _mm512_loadu_ps(out + t * rows);
    else
      acc[t] = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_loadu_ps(out + t * rows), 0);
  }
  for (int64_t b = b0; b < b1; ++b) {
    prefetch_block(p0 + b);
    prefetch_block(p1 + b);
    __m512i u[8];
    X::unpack(w0[b], w1[b], u);
    const __m512 d = load_d16(w0[b].d, w1[b].d);
    const __m512 m = X::mins(w0[b], w1[b]);
    for (int t = 0; t < T; ++t) {
      const int8_t* q = a[t][b].qs;
      // Two chains (one of 8 was slower: the tile is bound by their latency
      // too); the first starts at -o x the activations' sum.
      __m512i s0 = X::kOffset != 0 ? _mm512_set1_epi32(corr[t * kChunk + (b - b0)]) : _mm512_setzero_si512();
      __m512i s1 = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        s0 = _mm512_dpbusd_epi32(s0, u[c], act4(q, c));
        s1 = _mm512_dpbusd_epi32(s1, u[c + 4], act4(q, c + 4));
      }
      const __m512i s = _mm512_add_epi32(s0, s1);
      acc[t] = X::step(acc[t], s, d, m, a[t][b]);
    }
  }
  for (int t = 0; t < T; ++t) {
    if (pair)
      _mm512_storeu_ps(out + t * rows, acc[t]);
    else
      _mm256_storeu_ps(out + t * rows, lo256_ps(acc[t]));
  }
}

template <GgmlType kType, int T, class Block>
void tiles_of(int n, const Block* w0, const Block* w1, const Block* p0, const Block* p1, int64_t b0, int64_t b1,
              const BlockQ8A* const* a, const int32_t* corr, float* out, int64_t rows) {
  if constexpr (T >= 1) {
    if (n == T) return tile<kType, T>(w0, w1, p0, p1, b0, b1, a, corr, out, rows);
    tiles_of<kType, T - 1>(n, w0, w1, p0, p1, b0, b1, a, corr, out, rows);
  }
}

// Not std::min: see backend/simd_avx512.h on shared inline functions.
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Tokens in tiles of up to kMaxT; per tile the columns in chunks of kChunk
// blocks (one chunk up to 8192 columns) and per chunk the row groups in
// pairs (a lone last group by itself).
template <GgmlType kType>
void gemm_x16(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  using X = X16<kType>;
  using Block = typename X::Block;
  const int64_t nb = W.cols / QK;
  const Block* blocks = (const Block*)W.data;
  alignas(64) int32_t corr[kMaxT * kChunk];  // [token][block - b0]: -o x the block's activation sum
  for (int64_t t = t0; t < t1; t += kMaxT) {
    const int n = (int)min64(kMaxT, t1 - t);
    const BlockQ8A* a[kMaxT];
    for (int i = 0; i < n; ++i) a[i] = (const BlockQ8A*)(xa + (t + i) * xs);
    for (int64_t b0 = 0; b0 < nb; b0 += kChunk) {
      const int64_t b1 = min64(nb, b0 + kChunk);
      if constexpr (X::kOffset != 0)
        for (int i = 0; i < n; ++i)
          for (int64_t b = b0; b < b1; ++b) corr[i * kChunk + (b - b0)] = -X::kOffset * block_sum(a[i][b].qs);
      for (int64_t r = r0; r < r1; r += 2 * kPackRows) {
        const Block* w0 = blocks + (r / kPackRows) * nb;
        const Block* w1 = r + 2 * kPackRows <= r1 ? w0 + nb : w0;
        const int64_t rn = r + 2 * kPackRows < r1 ? r + 2 * kPackRows : r;  // the next pair (the last: its own)
        const Block* p0 = blocks + (rn / kPackRows) * nb;
        const Block* p1 = rn + 2 * kPackRows <= r1 ? p0 + nb : p0;
        tiles_of<kType, kMaxT>(n, w0, w1, p0, p1, b0, b1, a, corr, y + t * W.rows + r, W.rows);
      }
    }
  }
}

}  // namespace

GemmFn gemm_kernel_x16_avx512(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return gemm_x16<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return gemm_x16<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return gemm_x16<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return gemm_x16<GgmlType::Q5_1>;
    case GgmlType::IQ4_NL: return gemm_x16<GgmlType::IQ4_NL>;
    case GgmlType::Q8_0: return gemm_x16<GgmlType::Q8_0>;
    default: return nullptr;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
