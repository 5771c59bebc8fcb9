// AVX2 kernels of the F16 and BF16 x8 layouts (ops/weight_pack.h).
#include <immintrin.h>

#include <algorithm>

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/weight_pack.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

// ---- F16 and BF16 x8 (element-interleaved) -------------------------------
// Lane i of an accumulator is row 8g+i, and every output is one fma chain
// over k = 0..cols-1 in order: the same for every tile shape, so
// batch-invariant. Prefill tiles are 2 groups x 4 or 6 tokens (8 or 12
// independent chains hide the fma latency); single tokens take a whole
// block (tile_x8f_block1). The loops go by pairs of columns (cols is even:
// packable()), which BF16's layout stores in one 32-byte load. A tile's
// groups lie in one block of kRows16 rows, kGroup elements apart.
struct ColsF16 {  // [cols][64] fp16 per block
  using Elem = fp16_t;
  static constexpr bool kBf16 = false;
  static constexpr size_t kGroup = kPackRows;
  template <int kOdd>  // column k + kOdd, k even (even: column k's, for BF16)
  static __m256 col(const fp16_t* g, int64_t k, __m256 /*even*/) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(g + (k + kOdd) * kRows16)));
  }
};
// [cols/2][8][2] bf16 per group: bf16 -> f32 is a 16-bit shift. Column k
// is the low halves shifted up; column k + 1 the top halves, blended with
// column k's zero low halves: no constant register (the 2 x 6 prefill tile
// needs all 16; masked by an and, GCC spills 4 of its accumulators, 1.27x
// slower, and two shifts compete with the fmas; with the blend it runs
// within 5 % of F16's).
struct ColsBF16 {  // [cols/2][64][2] bf16 per block
  using Elem = bf16_t;
  static constexpr bool kBf16 = true;
  static constexpr size_t kGroup = 2 * kPackRows;
  template <int kOdd>
  static __m256 col(const bf16_t* g, int64_t k, __m256 even) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(g + k * kRows16));  // columns k, k + 1
    if constexpr (kOdd) return _mm256_castsi256_ps(_mm256_blend_epi16(_mm256_castps_si256(even), v, 0xaa));
    else return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
};

template <class C, int G, int T>  // G groups of 8 rows, T tokens
void tile_x8f(const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
              int64_t r0, float* y) {
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = (const float*)(xa + (t0 + t) * xs);
  __m256 acc[G][T];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < T; ++t) acc[g][t] = _mm256_setzero_ps();
  __m256 wv[G];  // the last column's
  for (int g = 0; g < G; ++g) wv[g] = _mm256_setzero_ps();
  auto step = [&]<int kOdd>(int64_t k) {
    for (int g = 0; g < G; ++g) wv[g] = C::template col<kOdd>(w + g * C::kGroup, k, wv[g]);
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
  const typename C::Elem* w1 = w + C::kGroup;
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

// Single tokens (decode, and the last of a prefill call): up to a whole
// block of kRows16 rows (8 groups) at once,
// one sequential stream, prefetched tiling::kStreamAhead bytes ahead; per
// group both columns of a pair (a group's BF16 column k + 1 comes from its
// column k's load), so no weight vector lives across groups: 8
// accumulators, 2 broadcasts and 2 temporaries of the 16 registers. Each
// output's chain is the one above, column by column. kvforge_microbench
// BM_Decode1/{F16,BF16}_avx2 (AVX2 kernels on the AVX-512 machine, best of
// 5 alternating runs, beside a compile): F16 22 -> 29 GB/s, BF16 13 -> 26,
// against tiles of 4 groups (half of each block's lines per pass).
template <class C, int G>
void tile_x8f_block1(const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t, int64_t rows,
                     int64_t r0, float* y) {
  const float* x = (const float*)(xa + t * xs);
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t k = 0; k < cols; k += 2) {
    tiling::prefetch_stream<2 * kRows16 * sizeof(typename C::Elem)>(w + k * kRows16);
    const __m256 x0 = _mm256_broadcast_ss(x + k), x1 = _mm256_broadcast_ss(x + k + 1);
    for (int g = 0; g < G; ++g) {
      const __m256 even = C::template col<0>(w + g * C::kGroup, k, _mm256_setzero_ps());
      acc[g] = _mm256_fmadd_ps(even, x0, acc[g]);
      acc[g] = _mm256_fmadd_ps(C::template col<1>(w + g * C::kGroup, k, even), x1, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(y + t * rows + r0 + 8 * g, acc[g]);
}

template <class C>
void x8f_block1(int n_groups, const typename C::Elem* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t,
                int64_t rows, int64_t r, float* y) {
  switch (n_groups) {
    case 1: return tile_x8f_block1<C, 1>(w, cols, xa, xs, t, rows, r, y);
    case 2: return tile_x8f_block1<C, 2>(w, cols, xa, xs, t, rows, r, y);
    case 3: return tile_x8f_block1<C, 3>(w, cols, xa, xs, t, rows, r, y);
    case 4: return tile_x8f_block1<C, 4>(w, cols, xa, xs, t, rows, r, y);
    case 5: return tile_x8f_block1<C, 5>(w, cols, xa, xs, t, rows, r, y);
    case 6: return tile_x8f_block1<C, 6>(w, cols, xa, xs, t, rows, r, y);
    case 7: return tile_x8f_block1<C, 7>(w, cols, xa, xs, t, rows, r, y);
    default: return tile_x8f_block1<C, 8>(w, cols, xa, xs, t, rows, r, y);
  }
}

// Tiles of T tokens over the ng groups from w (row r): pairs, then a single group.
template <class C, int T>
void x8f_tiles(int ng, const typename C::Elem* w, const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t t,
               int64_t r, float* y) {
  for (int g = 0; g < ng; g += 2) {
    const int64_t rg = r + g * kPackRows;
    if (ng - g >= 2) tile_x8f_2xT<C, T>(w + g * C::kGroup, W.cols, xa, xs, t, W.rows, rg, y);
    else tile_x8f<C, 1, T>(w + g * C::kGroup, W.cols, xa, xs, t, W.rows, rg, y);
  }
}

template <class C>
void gemm_x8f(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  const typename C::Elem* base = (const typename C::Elem*)W.data;
  if (t1 - t0 == 1) {  // decode: a tile per block
    for (int64_t r = r0, n; r < r1; r += n) {
      n = rows16_in_block(r, r1);
      x8f_block1<C>((int)(n / kPackRows), base + group16_offset(W.cols, r, C::kBf16), W.cols, xa, xs, t0, W.rows, r,
                    y);
    }
    return;
  }
  for (int64_t r = r0; r < r1;) {  // up to 4 groups, inside one block of kRows16
    const int ng = (int)std::min<int64_t>(4, rows16_in_block(r, r1) / kPackRows);
    const typename C::Elem* w = base + group16_offset(W.cols, r, C::kBf16);
    int64_t t = t0;
    // Token tiles of 6, then one of 4, then single tokens; pairs of groups,
    // then a single group. Every output is the same fma chain in all of them.
    for (; t + 6 <= t1; t += 6) x8f_tiles<C, 6>(ng, w, W, xa, xs, t, r, y);
    for (; t + 4 <= t1; t += 4) x8f_tiles<C, 4>(ng, w, W, xa, xs, t, r, y);
    for (; t < t1; ++t) x8f_block1<C>(ng, w, W.cols, xa, xs, t, W.rows, r, y);
    r += ng * kPackRows;
  }
}

}  // namespace

GemmFn gemm_kernel_f16x8_avx2(GgmlType t) {
  switch (t) {
    case GgmlType::F16: return gemm_x8f<ColsF16>;
    case GgmlType::BF16: return gemm_x8f<ColsBF16>;
    default: return nullptr;
  }
}

}  // namespace kvforge
