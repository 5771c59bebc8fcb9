// AVX-512 integer sums of the x8 K-quant kernels (ops/kpack_x8.h has the
// rest and the contract): the AVX2 scheme (matmul_kpack_avx2.cpp) on two
// element vectors per zmm (the 256-bit halves: vectors c and c + 1, both
// rows 0..7), vpdpwssd applying the sub-block scale and accumulating; the
// halves are added once per super-block (IQ4_XS: vpdpbusd on the table
// values + 128, vpmulld by the scale). Exact integers, so the results are
// the scalar reference's bits like the AVX2 kernels'.
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cstring>
#include <utility>

#include "ops/kpack_x8.h"
#include "ops/matmul_kernels.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

using namespace kpack;

constexpr int kT = 4;  // tokens per tile

// Activations 4c..4c+3 in the dwords of the low half, 4c+4..4c+7 in the high one.
inline __m512i act8(const BlockQ8K& a, int c) {
  int64_t v;
  std::memcpy(&v, a.qs + 4 * c, 8);
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_epi32(idx, _mm512_set1_epi64(v));
}

inline __m512i both_halves(__m256i v) { return _mm512_inserti64x4(_mm512_castsi256_si512(v), v, 1); }
inline __m256i fold_halves(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// Sub-block s of 16 elements (element vectors 4s, 4s+1 in e[0], 4s+2, 4s+3
// in e[1], unsigned) times its scale pairs scv, into A.
template <int T>
inline void sub16(const __m512i* e, const BlockQ8K* const* a, int64_t b, int s, __m512i scv, __m512i* A) {
  for (int t = 0; t < T; ++t) {
    const __m512i p = _mm512_add_epi16(_mm512_maddubs_epi16(e[0], act8(a[t][b], 4 * s)),
                                       _mm512_maddubs_epi16(e[1], act8(a[t][b], 4 * s + 2)));
    A[t] = _mm512_dpwssd_epi32(A[t], p, scv);
  }
}

// Q4_K, half H (sub-blocks 4H..4H+3): per int16 lane four maddubs pairs,
// <= 4*2*15*127 = 15240.
template <int H, int T>
inline void q4k_half(const BlockQ4_Kx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int jj = 0; jj < 4; ++jj) {
    const int j = 4 * H + jj;
    const __m512i scv = both_halves(q4k_scale(B, j));
    __m512i p[T];
    for (int t = 0; t < T; ++t) p[t] = _mm512_setzero_si512();
    for (int k = 0; k < 8; k += 2) {
      const __m512i raw = _mm512_loadu_si512((const void*)B.qs[8 * jj + k]);
      const __m512i q = _mm512_and_si512(H ? _mm512_srli_epi16(raw, 4) : raw, m4);
      for (int t = 0; t < T; ++t)
        p[t] = _mm512_add_epi16(p[t], _mm512_maddubs_epi16(q, act8(a[t][b], 8 * j + k)));
    }
    for (int t = 0; t < T; ++t) A[t] = _mm512_dpwssd_epi32(A[t], p[t], scv);
  }
}

// Q6_K, quarter Q (sub-blocks 4Q..4Q+3), bits as in the AVX2 kernel; per
// int16 lane two maddubs pairs, <= 2*2*63*127 = 32004.
template <int Q, int T>
inline void q6k_quarter(const BlockQ6_Kx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
  for (int ss = 0; ss < 4; ++ss) {
    const int s = 4 * Q + ss;
    const __m512i scv = both_halves(q6k_scale(B, s));
    __m512i e[2];
    for (int k = 0; k < 2; ++k) {
      const int c = 4 * s + 2 * k;
      const __m512i l = _mm512_loadu_si512((const void*)B.ql[c % 32]);
      const __m512i h = _mm512_loadu_si512((const void*)B.qh[c % 16]);
      const __m512i lo = _mm512_and_si512(Q >= 2 ? _mm512_srli_epi16(l, 4) : l, m4);
      const __m512i hs = Q == 0 ? _mm512_slli_epi16(h, 4) : Q == 1 ? _mm512_slli_epi16(h, 2)
                       : Q == 2 ? h : _mm512_srli_epi16(h, 2);
      e[k] = _mm512_or_si512(lo, _mm512_and_si512(hs, m30));
    }
    sub16<T>(e, a, b, s, scv, A);
  }
}

// Q5_K, sub-block J, bits as in the AVX2 kernel; per int16 lane four
// maddubs pairs, <= 4*2*31*127 = 31496.
template <int J, int T>
inline void q5k_sub(const BlockQ5_Kx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  const __m512i m4 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
  const __m512i scv = both_halves(q4k_scale(B, J));
  __m512i p[T];
  for (int t = 0; t < T; ++t) p[t] = _mm512_setzero_si512();
  for (int k = 0; k < 8; k += 2) {
    const __m512i raw = _mm512_loadu_si512((const void*)B.qs[(8 * J + k) % 32]);
    const __m512i h = _mm512_loadu_si512((const void*)B.qh[k]);
    const __m512i hb = J <= 4 ? _mm512_slli_epi16(h, 4 - J) : _mm512_srli_epi16(h, J - 4);
    const __m512i q = _mm512_or_si512(_mm512_and_si512(J >= 4 ? _mm512_srli_epi16(raw, 4) : raw, m4),
                                      _mm512_and_si512(hb, m16));
    for (int t = 0; t < T; ++t) p[t] = _mm512_add_epi16(p[t], _mm512_maddubs_epi16(q, act8(a[t][b], 8 * J + k)));
  }
  for (int t = 0; t < T; ++t) A[t] = _mm512_dpwssd_epi32(A[t], p[t], scv);
}

// Q3_K, sub-block S, bits as in the AVX2 kernel (element vectors c, c + 1
// share their shifts); per int16 lane two maddubs pairs, <= 2*2*7*127.
template <int S, int T>
inline void q3k_sub(const BlockQ3_Kx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  constexpr int Q = S / 4, J = 2 * Q + (S % 4) / 2;
  const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
  const __m512i scv = both_halves(q6k_scale(B, S));
  __m512i e[2];
  for (int k = 0; k < 2; ++k) {
    const int c = 4 * S + 2 * k;
    const __m512i l = _mm512_loadu_si512((const void*)B.ql[c % 16]);
    const __m512i h = _mm512_loadu_si512((const void*)B.qh[c % 8]);
    const __m512i hb = J <= 2 ? _mm512_slli_epi16(h, 2 - J) : _mm512_srli_epi16(h, J - 2);
    e[k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 2 * Q), m3), _mm512_and_si512(hb, m4));
  }
  sub16<T>(e, a, b, S, scv, A);
}

// Q2_K, sub-block S, bits as in the AVX2 kernel; per int16 lane two maddubs
// pairs, <= 2*2*3*127 = 1524.
template <int S, int T>
inline void q2k_sub(const BlockQ2_Kx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m512i scv = both_halves(q2k_scale(B, S));
  __m512i e[2];
  for (int k = 0; k < 2; ++k) {
    const __m512i l = _mm512_loadu_si512((const void*)B.qs[(4 * S + 2 * k) % 16]);
    e[k] = _mm512_and_si512(_mm512_srli_epi16(l, 2 * (S / 4)), m3);
  }
  sub16<T>(e, a, b, S, scv, A);
}

// IQ4_XS, half H (sub-blocks 4H..4H+3, nibbles as Q4_K's) looked up in the
// IQ4_NL table + 128 (u8): vpdpbusd sums (v + 128) a exactly in int32, from
// -64 * (the sub-block's activation sum) in each half, so the two halves
// together hold sum v a; then vpmulld by the lane's scale.
template <int H, int T>
inline void iq4xs_half(const BlockIQ4_XSx8& B, const BlockQ8K* const* a, int64_t b, __m512i* A) {
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i grid = _mm512_broadcast_i32x4(
      _mm_xor_si128(_mm_loadu_si128((const __m128i*)kIq4nlValues), _mm_set1_epi8((char)0x80)));
  for (int jj = 0; jj < 4; ++jj) {
    const int j = 4 * H + jj;
    const __m512i scv = both_halves(iq4xs_scale32(B, j));
    __m512i s[T];
    for (int t = 0; t < T; ++t) s[t] = _mm512_set1_epi32(-64 * (a[t][b].bsums[2 * j] + a[t][b].bsums[2 * j + 1]));
    for (int k = 0; k < 8; k += 2) {
      const __m512i raw = _mm512_loadu_si512((const void*)B.qs[8 * jj + k]);
      const __m512i u = _mm512_shuffle_epi8(grid, _mm512_and_si512(H ? _mm512_srli_epi16(raw, 4) : raw, m4));
      for (int t = 0; t < T; ++t) s[t] = _mm512_dpbusd_epi32(s[t], u, act8(a[t][b], 8 * j + k));
    }
    for (int t = 0; t < T; ++t) A[t] = _mm512_add_epi32(A[t], _mm512_mullo_epi32(s[t], scv));
  }
}

// The zmm sums of one block type's function F, folded to 8 lanes.
template <int T, class F>
inline void folded(__m256i* A, F&& f) {
  __m512i s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_si512();
  f(s);
  for (int t = 0; t < T; ++t) A[t] = _mm256_add_epi32(A[t], fold_halves(s[t]));
}

struct SumsAvx512 {
  template <int T>
  static void sums(const BlockQ2_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      [&]<int... S>(std::integer_sequence<int, S...>) { (q2k_sub<S, T>(B, a, b, s), ...); }(
          std::make_integer_sequence<int, 16>{});
    });
  }
  template <int T>
  static void sums(const BlockQ3_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      [&]<int... S>(std::integer_sequence<int, S...>) { (q3k_sub<S, T>(B, a, b, s), ...); }(
          std::make_integer_sequence<int, 16>{});
    });
  }
  template <int T>
  static void sums(const BlockQ4_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      q4k_half<0, T>(B, a, b, s);
      q4k_half<1, T>(B, a, b, s);
    });
  }
  template <int T>
  static void sums(const BlockQ5_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      [&]<int... J>(std::integer_sequence<int, J...>) { (q5k_sub<J, T>(B, a, b, s), ...); }(
          std::make_integer_sequence<int, 8>{});
    });
  }
  template <int T>
  static void sums(const BlockQ6_Kx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      q6k_quarter<0, T>(B, a, b, s);
      q6k_quarter<1, T>(B, a, b, s);
      q6k_quarter<2, T>(B, a, b, s);
      q6k_quarter<3, T>(B, a, b, s);
    });
  }
  template <int T>
  static void sums(const BlockIQ4_XSx8& B, const BlockQ8K* const* a, int64_t b, __m256i* A) {
    folded<T>(A, [&](__m512i* s) {
      iq4xs_half<0, T>(B, a, b, s);
      iq4xs_half<1, T>(B, a, b, s);
    });
  }
};

}  // namespace

GemmFn gemm_kernel_kpack_avx512(GgmlType t) { return kpack::gemm_kernel<kT, SumsAvx512>(t); }

}  // namespace kvforge::KVFORGE_AVX512_NS
