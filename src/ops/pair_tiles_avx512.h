#pragma once
// What the AVX-512 tiles over pairs of x8 row groups share (16 rows per
// zmm: matmul_pairs_avx512.cpp, matmul_kpairs_avx512.cpp,
// matmul_x16_avx512.cpp; the store also the F16 and BF16 tiles of
// tiles16_avx512.h): the f32 rounding
// barrier, the walk over a task's rows and tokens, and the store of a
// tile's sums. Include after
// backend/simd_avx512.h; internal linkage, as the TUs that include it are
// built natively and again on SIMDe.
#include <cstdint>
#include <type_traits>

#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {
namespace {

// v, rounded to f32 where it stands: GCC contracts a * b + c into an fma
// even across statements; the scalar reference rounds the product first.
inline __m512 rounded512(__m512 v) {
#if defined(KVFORGE_AVX512_EMULATED)
  asm("" : "+m"(v));  // SIMDe's __m512 is a struct, no register operand
#else
  asm("" : "+v"(v));
#endif
  return v;
}

// Rows [r0, r1) (whole x8 groups): per two pairs (32 rows)
// prepare(row of group a, row of group b, slot 0 / 1) for both and
// run(G = 2, half = false, r); then one pair (G = 1); then a last group
// alone, prepared as a pair with itself, its high half unused (half = true).
template <class Prepare, class Run>
inline void walk_pairs(int64_t r0, int64_t r1, Prepare&& prepare, Run&& run) {
  using std::integral_constant, std::bool_constant;
  int64_t r = r0;
  for (; r + 4 * kPackRows <= r1; r += 4 * kPackRows) {
    prepare(r, r + kPackRows, 0);
    prepare(r + 2 * kPackRows, r + 3 * kPackRows, 1);
    run(integral_constant<int, 2>{}, bool_constant<false>{}, r);
  }
  if (r + 2 * kPackRows <= r1) {
    prepare(r, r + kPackRows, 0);
    run(integral_constant<int, 1>{}, bool_constant<false>{}, r);
    r += 2 * kPackRows;
  }
  if (r < r1) {
    prepare(r, r, 0);
    run(integral_constant<int, 1>{}, bool_constant<true>{}, r);
  }
}

// Tokens [ts, t1): tile(T, t) for tiles of kTok tokens, then 2, then 1.
template <int kTok, class Tile>
inline void token_tiles(int64_t ts, int64_t t1, Tile&& tile) {
  int64_t t = ts;
  for (; t + kTok <= t1; t += kTok) tile(std::integral_constant<int, kTok>{}, t);
  if (t + 2 <= t1) {
    tile(std::integral_constant<int, 2>{}, t);
    t += 2;
  }
  if (t < t1) tile(std::integral_constant<int, 1>{}, t);
}

// A tile's sums into y [tokens][rows]: acc[pair][token] is 16 rows from
// r0 + 16 pair, of the last pair only the low 8 when kHalf (a group alone).
template <int G, int T, bool kHalf>
[[gnu::always_inline]] inline void store_tile(const __m512 (&acc)[G][T], float* y, int64_t rows, int64_t r0,
                                              int64_t t0) {
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      float* dst = y + (t0 + t) * rows + r0 + 16 * g;
      if (kHalf && g == G - 1) _mm256_storeu_ps(dst, lo256_ps(acc[g][t]));
      else _mm512_storeu_ps(dst, acc[g][t]);
    }
}

}  // namespace
}  // namespace kvforge::KVFORGE_AVX512_NS
