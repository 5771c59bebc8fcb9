// AVX2 kernels for the interleaved x8 layouts (ops/weight_pack.h): the
// dispatch, and the nibble types' one-pass tiles here; Q8_0 and IQ4_NL's
// prepared form in matmul_q8x8_avx2.cpp, IQ4_XS and Q3_K prefill in
// matmul_kprep_avx2.cpp, F16 and BF16 in matmul_f16x8_avx2.cpp.
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
// prepare the weights of two row groups once per call (gemm_prepared,
// ops/prepared_x8_avx2.h) and run tiles of both groups x 2 tokens on them:
// Q8_0 / IQ4_NL / IQ4_XS in the xor form (matmul_q8x8_avx2.cpp), Q3_K on its
// unpacked u. Same integers, same chains.
#include <immintrin.h>

#include "ops/matmul_kernels.h"
#include "ops/nibpack_x8.h"
#include "ops/prepared_x8_avx2.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

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

// Q4_0, Q5_0, IQ4_NL: matmul_nibu_avx2.cpp (two-group tiles; Q4_0 and Q5_0
// decode there too, one group at a time on their unsigned q: 1.3-1.4x the
// sign form's compute rate, kvforge_microbench BM_Decode1), IQ4_NL prefill
// the prepared xor-form tiles (matmul_q8x8_avx2.cpp) and its decode the
// one-group tiles above (nibu's sign-form one-group tile was ~10 % slower).
// All give the scalar reference's bits, so which one a call takes changes no
// result.
constexpr int64_t kNibuMinTokens = 4;

template <GgmlType kType>
void gemm_signed_nib(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                     int64_t t1, float* y) {
  static const GemmFn nibu = gemm_kernel_nibu_avx2(kType);
  static const GemmFn prepared = gemm_kernel_q8x8_avx2(kType);  // IQ4_NL's; null for the others
  if (prepared && t1 - t0 >= x8prep::kPrepMin) prepared(W, xa, xs, r0, r1, t0, t1, y);
  else if (kType == GgmlType::IQ4_NL && t1 - t0 < kNibuMinTokens)
    nibpack::gemm_x8n<kTNib, NibSumsAvx2, kType>(W, xa, xs, r0, r1, t0, t1, y);
  else nibu(W, xa, xs, r0, r1, t0, t1, y);
}

}  // namespace

GemmFn gemm_kernel_packed_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return gemm_kernel_q8x8_avx2(t);
    case GgmlType::F16:
    case GgmlType::BF16: return gemm_kernel_f16x8_avx2(t);
    case GgmlType::Q4_0: return gemm_signed_nib<GgmlType::Q4_0>;
    case GgmlType::Q5_0: return gemm_signed_nib<GgmlType::Q5_0>;
    case GgmlType::IQ4_NL: return gemm_signed_nib<GgmlType::IQ4_NL>;
    case GgmlType::IQ4_XS:
    case GgmlType::Q3_K: return gemm_kernel_kprep_avx2(t);
    default: break;
  }
  if (GemmFn f = nibpack::gemm_kernel<kTNib, NibSumsAvx2>(t)) return f;  // Q4_1, Q5_1
  return gemm_kernel_kpack_avx2(t);  // Q3_K..Q6_K (matmul_kpack_avx2.cpp) or nullptr
}

}  // namespace kvforge
