// AVX2 prefill kernels of the IQ4_XSx8 and Q3_Kx8 layouts (ops/weight_pack.h,
// ops/kpack_x8.h) over super-blocks prepared once per call; calls of fewer
// than kPrepMin tokens take kpack's tiles (matmul_kpack_avx2.cpp).
#include <immintrin.h>

#include "ops/kpack_x8.h"
#include "ops/matmul_kernels.h"
#include "ops/prepared_x8_avx2.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge {

namespace {

using x8prep::gemm_prepared;
using x8prep::Iq4nlLookup;
using x8prep::kPrepMin;

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

}  // namespace

GemmFn gemm_kernel_kprep_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::IQ4_XS: return gemm_iq4xs;
    case GgmlType::Q3_K: return gemm_q3k;
    default: return nullptr;
  }
}

}  // namespace kvforge
