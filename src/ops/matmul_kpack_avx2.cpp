// AVX2 integer sums of the x8 K-quant kernels (ops/kpack_x8.h has the rest
// and the contract: the scalar reference's bits, batch invariant).
//
// Lane i of every vector is row i of the group: an element vector (4
// elements of 8 rows, ops/weight_pack.h) times the 4 activations broadcast
// to every dword gives, through maddubs, two int16 partial dots per row;
// sub-block sums stay int16 while they provably fit, then madd with the
// sub-block's scale (dword i = (sc_i, sc_i)) widens them to int32. No
// horizontal sums and no scale decoding in the loop: integer dots only.
// IQ4_XS's signed table values go through maddubs as |v| against a * sign(v).
#include <immintrin.h>

#include <utility>

#include "ops/kpack_x8.h"
#include "ops/matmul_kernels.h"

namespace kvforge {

namespace {

using namespace kpack;

constexpr int kT = 4;  // tokens per tile

// Q4_K, half H: sub-blocks j = 4H..4H+3, element vectors 8j..8j+7 = the
// low (H = 0) or high nibbles of qs[8(j - 4H) ..]. maddubs pairs <=
// 2*15*127 = 3810, eight of them <= 30480 in int16; madd with sc <= 63.
template <int H, int T>
inline void q4k_half(const BlockQ4_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int jj = 0; jj < 4; ++jj) {
    const int j = 4 * H + jj;
    const __m256i scv = q4k_scale(B, j);
    __m256i p[T];
    for (int t = 0; t < T; ++t) p[t] = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[8 * jj + k]);
      const __m256i q = _mm256_and_si256(H ? _mm256_srli_epi16(raw, 4) : raw, m4);
      for (int t = 0; t < T; ++t)
        p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(q, act4(a[t][b], 8 * j + k)));
    }
    for (int t = 0; t < T; ++t) A[t] = _mm256_add_epi32(A[t], _mm256_madd_epi16(p[t], scv));
  }
}

// Q6_K, quarter Q: element vectors 16Q..16Q+15 = sub-blocks 4Q..4Q+3; low
// four bits from ql[c mod 32] (high nibbles for Q >= 2), top two bits
// (qh[c mod 16] >> 2Q) & 3. Unsigned q (0..63): maddubs pairs <= 2*63*127 =
// 16002, two of them <= 32004 in int16 (the -32 is kpack::q6k_offset's).
template <int Q, int T>
inline void q6k_quarter(const BlockQ6_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
  for (int ss = 0; ss < 4; ++ss) {
    const int s = 4 * Q + ss;
    const __m256i scv = q6k_scale(B, s);
    __m256i e[4];
    for (int k = 0; k < 4; ++k) {
      const int c = 4 * s + k;
      const __m256i l = _mm256_loadu_si256((const __m256i*)B.ql[c % 32]);
      const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[c % 16]);
      const __m256i lo = _mm256_and_si256(Q >= 2 ? _mm256_srli_epi16(l, 4) : l, m4);
      // bits 2Q, 2Q+1 to 4, 5 (16-bit shifts: what crosses a byte is masked off)
      const __m256i hs = Q == 0 ? _mm256_slli_epi16(h, 4) : Q == 1 ? _mm256_slli_epi16(h, 2)
                       : Q == 2 ? h : _mm256_srli_epi16(h, 2);
      e[k] = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
    }
    for (int t = 0; t < T; ++t) {
      const BlockQ8K& at = a[t][b];
      const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(e[0], act4(at, 4 * s)),
                                          _mm256_maddubs_epi16(e[1], act4(at, 4 * s + 1)));
      const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(e[2], act4(at, 4 * s + 2)),
                                          _mm256_maddubs_epi16(e[3], act4(at, 4 * s + 3)));
      A[t] = _mm256_add_epi32(A[t], _mm256_add_epi32(_mm256_madd_epi16(p0, scv), _mm256_madd_epi16(p1, scv)));
    }
  }
}

// Q5_K, sub-block J: element vectors 8J+k, nibbles as Q4_K's, fifth bit
// (qh[k] >> J) & 1. maddubs pairs <= 2*31*127 = 7874: four of them <=
// 31496 per int16 sum, two sums per sub-block.
template <int J, int T>
inline void q5k_sub(const BlockQ5_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  const __m256i m4 = _mm256_set1_epi8(15), m16 = _mm256_set1_epi8(16);
  const __m256i scv = q4k_scale(B, J);
  __m256i p[2][T];
  for (int t = 0; t < T; ++t) p[0][t] = p[1][t] = _mm256_setzero_si256();
  for (int k = 0; k < 8; ++k) {
    const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[(8 * J + k) % 32]);
    const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[k]);
    // bit J to bit 4 (16-bit shifts: what crosses a byte is masked off)
    const __m256i hb = J <= 4 ? _mm256_slli_epi16(h, 4 - J) : _mm256_srli_epi16(h, J - 4);
    const __m256i q = _mm256_or_si256(_mm256_and_si256(J >= 4 ? _mm256_srli_epi16(raw, 4) : raw, m4),
                                      _mm256_and_si256(hb, m16));
    for (int t = 0; t < T; ++t)
      p[k / 4][t] = _mm256_add_epi16(p[k / 4][t], _mm256_maddubs_epi16(q, act4(a[t][b], 8 * J + k)));
  }
  for (int t = 0; t < T; ++t)
    A[t] = _mm256_add_epi32(A[t], _mm256_add_epi32(_mm256_madd_epi16(p[0][t], scv), _mm256_madd_epi16(p[1][t], scv)));
}

// Q3_K, sub-block S (quarter Q = S / 4): element vectors c = 4S..4S+3, low
// two bits (ql[c mod 16] >> 2Q) & 3, high bit J = c / 8 = 2Q + (S % 4) / 2
// of qh[c mod 8]: u = low + 4 high in 0..7 (q = u - 4, the 4 is
// kpack::q6k_offset's). maddubs pairs <= 2*7*127 = 1778, four <= 7112.
template <int S, int T>
inline void q3k_sub(const BlockQ3_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  constexpr int Q = S / 4, J = 2 * Q + (S % 4) / 2;
  const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
  const __m256i scv = q6k_scale(B, S);
  __m256i p[T];
  for (int t = 0; t < T; ++t) p[t] = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    const int c = 4 * S + k;
    const __m256i l = _mm256_loadu_si256((const __m256i*)B.ql[c % 16]);
    const __m256i h = _mm256_loadu_si256((const __m256i*)B.qh[c % 8]);
    // bit J to bit 2 (16-bit shifts: what crosses a byte is masked off)
    const __m256i hb = J <= 2 ? _mm256_slli_epi16(h, 2 - J) : _mm256_srli_epi16(h, J - 2);
    const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 2 * Q), m3), _mm256_and_si256(hb, m4));
    for (int t = 0; t < T; ++t) p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(u, act4(a[t][b], c)));
  }
  for (int t = 0; t < T; ++t) A[t] = _mm256_add_epi32(A[t], _mm256_madd_epi16(p[t], scv));
}

// Q2_K, sub-block S (quarter Q = S / 4): element vectors c = 4S..4S+3,
// u = (qs[c mod 16] >> 2Q) & 3; maddubs pairs <= 2*3*127 = 762, four <= 3048.
template <int S, int T>
inline void q2k_sub(const BlockQ2_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i scv = q2k_scale(B, S);
  __m256i p[T];
  for (int t = 0; t < T; ++t) p[t] = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    const int c = 4 * S + k;
    const __m256i u = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i*)B.qs[c % 16]), 2 * (S / 4)), m3);
    for (int t = 0; t < T; ++t) p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(u, act4(a[t][b], c)));
  }
  for (int t = 0; t < T; ++t) A[t] = _mm256_add_epi32(A[t], _mm256_madd_epi16(p[t], scv));
}

// IQ4_XS, half H: sub-blocks j = 4H..4H+3, element vectors 8j..8j+7 = the
// low (H = 0) or high nibbles of qs[8(j - 4H) ..], looked up in the signed
// IQ4_NL table (-127..113): maddubs(|v|, a * sign(v)), pairs <= 2*127*127 =
// 32258, so each is widened by the madd with the scale at once.
template <int H, int T>
inline void iq4xs_half(const BlockIQ4_XSx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)kIq4nlValues));
  for (int jj = 0; jj < 4; ++jj) {
    const int j = 4 * H + jj;
    const __m256i scv = q6k_scale(B, j);
    for (int k = 0; k < 8; ++k) {
      const __m256i raw = _mm256_loadu_si256((const __m256i*)B.qs[8 * jj + k]);
      const __m256i v = _mm256_shuffle_epi8(grid, _mm256_and_si256(H ? _mm256_srli_epi16(raw, 4) : raw, m4));
      const __m256i u = _mm256_sign_epi8(v, v);
      for (int t = 0; t < T; ++t) {
        const __m256i p = _mm256_maddubs_epi16(u, _mm256_sign_epi8(act4(a[t][b], 8 * j + k), v));
        A[t] = _mm256_add_epi32(A[t], _mm256_madd_epi16(p, scv));
      }
    }
  }
}

struct SumsAvx2 {
  template <int T>
  static void sums(const BlockQ2_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    [&]<int... S>(std::integer_sequence<int, S...>) { (q2k_sub<S, T>(B, a, b, A), ...); }(
        std::make_integer_sequence<int, 16>{});
  }
  template <int T>
  static void sums(const BlockQ3_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    [&]<int... S>(std::integer_sequence<int, S...>) { (q3k_sub<S, T>(B, a, b, A), ...); }(
        std::make_integer_sequence<int, 16>{});
  }
  template <int T>
  static void sums(const BlockQ4_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    q4k_half<0, T>(B, a, b, A);
    q4k_half<1, T>(B, a, b, A);
  }
  template <int T>
  static void sums(const BlockQ5_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    [&]<int... J>(std::integer_sequence<int, J...>) { (q5k_sub<J, T>(B, a, b, A), ...); }(
        std::make_integer_sequence<int, 8>{});
  }
  template <int T>
  static void sums(const BlockQ6_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    q6k_quarter<0, T>(B, a, b, A);
    q6k_quarter<1, T>(B, a, b, A);
    q6k_quarter<2, T>(B, a, b, A);
    q6k_quarter<3, T>(B, a, b, A);
  }
  template <int T>
  static void sums(const BlockIQ4_XSx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    iq4xs_half<0, T>(B, a, b, A);
    iq4xs_half<1, T>(B, a, b, A);
  }
};

}  // namespace

GemmFn gemm_kernel_kpack_avx2(GgmlType t) { return kpack::gemm_kernel<kT, SumsAvx2>(t); }

}  // namespace kvforge
