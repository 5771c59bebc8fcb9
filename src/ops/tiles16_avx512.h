#pragma once
// The AVX-512 tiles of the packed 16-bit layouts (ops/weight_pack.h: blocks
// of kRows16 = 64 rows, interleaved column by column), shared by the F16
// kernel (matmul_packed_avx512.cpp: weights widened to f32, one fma per
// column) and the BF16 one (matmul_avx512bf16.cpp: vdpbf16ps, one per column
// pair). A zmm holds a pair of 8-row groups, adjacent in their block: lanes
// 0..7 = rows 8g..8g+7, lanes 8..15 = the next group. A "step" is what one
// instruction takes of each lane's row: a column (F16) or a column pair
// (BF16), Fmt::kStride elements further in the block.
//
// Every output is the one chain acc = Fmt::madd(acc, w_j, x_j), j = 0, 1, ...
// in order, whatever the tile shape or the (r0, r1, t0, t1) split: batch
// invariant.
//
// Fmt: Elem (weight element), kStride (elements from one step of a block to
// the next), kColsPerStep, load<Half>(p) (a pair of groups' step from p;
// Half: the first group alone, in both halves), bcast(xa_row, j) (the
// token's step j for every lane), madd(acc, w, x).
//
// Include after backend/simd_avx512.h; internal linkage, as the TUs that
// include it are built natively and again on SIMDe.
#include <cstddef>
#include <cstdint>

#include "ops/gemm_tiling.h"
#include "ops/pair_tiles_avx512.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {
namespace {

// A tile takes its groups over all steps. Decode: a whole block (4 pairs),
// one sequential stream prefetched tiling::kStreamAhead bytes ahead (eight
// 8-row streams 12 KiB apart, the layout before the blocks, lost ~30 % of
// one core's read bandwidth). Prefill: 4 pairs x 4 tokens or, where a block
// is cut, up to 2 pairs x 8 tokens: 16 independent chains, twice the 2
// ports x 4-cycle fma latency, using 16 + 4 + 1 of the 32 registers. Tiles
// of part of a block read part of each of its lines (2 pairs x 8 tokens
// over whole blocks: ~10 % slower), and slicing the columns to keep a
// block's weights in L1 cost more in partial sums through L2 than it saved
// (kvforge_microbench BM_MatmulPacked, 64 tokens, alternating A/B).
constexpr int kTokWide = 8;

// P pairs x T tokens over all steps; w = the group of row r0.
// The pragmas unroll the pair/token loops early enough for GCC 12 to keep
// acc[][] in registers; without them it stores all 16 accumulators to the
// stack on every step (checked in the -O3 assembly).
template <class Fmt, int P, int T, bool Half>
void tile16(const typename Fmt::Elem* w, int64_t steps, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
            int64_t r0, float* y) {
  const uint8_t* x[T];  // [token] activation row
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) x[t] = xa + (t0 + t) * xs;
  __m512 acc[P][T];
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
  constexpr size_t kPair = 2 * kPackRows * Fmt::kStride / kRows16;  // elements from a pair of groups to the next
  for (int64_t j = 0; j < steps; ++j) {
    const typename Fmt::Elem* wj = w + j * Fmt::kStride;
    if constexpr (T == 1) tiling::prefetch_stream<Fmt::kStride * sizeof(typename Fmt::Elem)>(wj);
    decltype(Fmt::template load<false>(wj)) wv[P];
    #pragma GCC unroll 8
    for (int p = 0; p < P; ++p)
      wv[p] = Half && p == P - 1 ? Fmt::template load<true>(wj + kPair * p) : Fmt::template load<false>(wj + kPair * p);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const auto xb = Fmt::bcast(x[t], j);
      #pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p][t] = Fmt::madd(acc[p][t], wv[p], xb);
    }
  }
  store_tile<P, T, Half>(acc, y, rows, r0, t0);
}

// n groups (1..8; 5..8 only for T <= 4) from w on, as one tile.
template <class Fmt, int T>
void groups16(int n, const typename Fmt::Elem* w, int64_t steps, const uint8_t* xa, size_t xs, int64_t t0,
              int64_t rows, int64_t r0, float* y) {
  switch (n) {
    case 1: return tile16<Fmt, 1, T, true>(w, steps, xa, xs, t0, rows, r0, y);
    case 2: return tile16<Fmt, 1, T, false>(w, steps, xa, xs, t0, rows, r0, y);
    case 3: return tile16<Fmt, 2, T, true>(w, steps, xa, xs, t0, rows, r0, y);
    case 4: return tile16<Fmt, 2, T, false>(w, steps, xa, xs, t0, rows, r0, y);
    default: break;
  }
  if constexpr (T <= 4) {
    switch (n) {
      case 5: return tile16<Fmt, 3, T, true>(w, steps, xa, xs, t0, rows, r0, y);
      case 6: return tile16<Fmt, 3, T, false>(w, steps, xa, xs, t0, rows, r0, y);
      case 7: return tile16<Fmt, 4, T, true>(w, steps, xa, xs, t0, rows, r0, y);
      case 8: return tile16<Fmt, 4, T, false>(w, steps, xa, xs, t0, rows, r0, y);
      default: break;
    }
  }
}

// The GemmFn of a packed F16/BF16 matrix: per block (or the part of one in
// [r0, r1)), token tiles of 8 (at most 4 groups), 4, 2, 1.
template <class Fmt>
void gemm16(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
            float* y) {
  using Elem = typename Fmt::Elem;
  const Elem* base = (const Elem*)W.data;
  const int64_t steps = W.cols / Fmt::kColsPerStep;
  for (int64_t r = r0, n; r < r1; r += n) {
    n = rows16_in_block(r, r1);
    const int ng = (int)(n / kPackRows);
    const Elem* w = base + group16_offset(W.cols, r, Fmt::kColsPerStep == 2);
    int64_t t = t0;
    if (ng <= 4)
      for (; t + kTokWide <= t1; t += kTokWide) groups16<Fmt, kTokWide>(ng, w, steps, xa, xs, t, W.rows, r, y);
    token_tiles<4>(t, t1, [&](auto T, int64_t tt) { groups16<Fmt, decltype(T)::value>(ng, w, steps, xa, xs, tt, W.rows, r, y); });
  }
}

}  // namespace
}  // namespace kvforge::KVFORGE_AVX512_NS
