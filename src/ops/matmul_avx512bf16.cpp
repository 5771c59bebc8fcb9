// AVX512_BF16 kernel: BF16 weights times activations rounded to bf16, with
// vdpbf16ps.
//
// matmul.cpp rounds the activations to bf16 (nearest even) once per matmul
// when it picks this kernel (ActFormat::BF16). One vdpbf16ps then multiplies
// 32 weight/activation pairs and adds them, two per lane, to 16 f32
// accumulators. Against matmul_avx512.cpp's BF16 kernel (f32 activations,
// weights widened to f32 first) that halves the activation bytes and drops
// the widening, for an activation rounding error of at most 2^-8 of each
// element, below the amax/254 of the 8-bit activation blocks that the
// quantized formats use.
//
// Each output (r, t) owns one 16-lane accumulator: lane i takes elements
// 32j + 2i and 32j + 2i + 1 for j = 0, 1, ...; then the fixed 16-lane tree of
// hsum512_ps and the cols % 32 tail elements by scalar fma in order. The same
// sequence runs whatever tile the pair sits in (batch invariance).
//
// The products of two bf16 are exact in f32, so the result differs from the
// scalar reference (gemm_kernel_bf16act_ref) only by the order of the f32
// additions. Real vdpbf16ps adds the odd product of a lane first and treats
// denormal inputs and results as zero; SIMDe's emulation (tests/avx512_emu/)
// adds the even one first and keeps denormals, so the emulated and native
// bits may differ: both are tested against the reference with a tolerance.
#include "backend/simd_avx512.h"

#if !defined(KVFORGE_AVX512_EMULATED) && !defined(__AVX512BF16__)
#error "matmul_avx512bf16.cpp needs -mavx512bf16 (see CMakeLists.txt)"
#endif

#include "ops/gemm_tiling.h"
#include "ops/matmul_kernels.h"
#include "ops/pair_tiles_avx512.h"
#include "ops/weight_pack.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

constexpr int kR = 4;  // rows per tile
constexpr int kT = 4;  // tokens per tile (R*T accumulators + R weight registers of 32)
template <template <class, int, int> class Tile, class WT>
using Gemm = tiling::Tiler<kR, kT, Tile, WT>;

inline __m512bh load_bf16x32(const bf16_t* p) {
  return __builtin_bit_cast(__m512bh, _mm512_loadu_si512((const void*)p));
}
// Local, not util/fp16.h's bf16_to_fp32 (see backend/simd_avx512.h).
inline float bf16_value(bf16_t b) { return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128((int)b << 16))); }

template <int R, int T>
void tile_bf16(const WeightMatrix& W, int64_t r0, const uint8_t* xa, size_t xs, int64_t t0, float* y) {
  const int64_t n = W.cols;
  const bf16_t* w[R];  // [R] weight rows, [cols] each
  const bf16_t* x[T];  // [T] activation rows, [cols] each
  for (int r = 0; r < R; ++r) w[r] = (const bf16_t*)W.row(r0 + r);
  for (int t = 0; t < T; ++t) x[t] = (const bf16_t*)(xa + (t0 + t) * xs);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_bf16x32(w[r] + k);
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = load_bf16x32(x[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) {
      float s = hsum512_ps(acc[r][t]);
      for (int64_t kk = k; kk < n; ++kk) s = __builtin_fmaf(bf16_value(w[r][kk]), bf16_value(x[t][kk]), s);
      y[(t0 + t) * W.rows + r0 + r] = s;
    }
}

template <class WT, int R, int T>
struct TileBf16 {
  static void run(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t, float* y) {
    tile_bf16<R, T>(W, r, xa, xs, t, y);
  }
};

// ---- packed BF16 ([rows/8][cols/2][8][2], ops/weight_pack.h) --------------
// Dword i of a group's 32-byte column pair j holds row 8g+i's elements 2j
// (low half) and 2j + 1: exactly a vdpbf16ps operand. A zmm holds the pair
// of two groups (lanes 0..7 = rows 8g..8g+7, 8..15 = the next group's), and
// against the token's elements 2j, 2j + 1 broadcast to every dword each lane
// adds its own row's two products: no horizontal sums, no widening. Each
// output is the one chain acc = dpbf16(acc, w_j, x_j), j = 0..cols/2-1 in
// order, whatever the tile (batch invariant); against plain rows that is
// another order of the same exact products (the same tolerance).

// Prefill: 2 pairs x 8 tokens = 16 chains (the F16 kernel's tile shape);
// single tokens take up to 4 pairs at once and prefetch each group's stream
// tiling::kStreamAhead bytes ahead, as the F16 tiles do (BM_Decode1/BF16,
// one core, alternating A/B on a loaded machine: 23.5-25.2 -> 27.6-30.0 GB/s).
constexpr int kTP = 8;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Column pair j of groups g0 (lanes 0..7) and g1 (lanes 8..15).
inline __m512bh load_pair(const bf16_t* g0, const bf16_t* g1, int64_t j) {
  const __m256i lo = _mm256_loadu_si256((const __m256i*)(g0 + j * 2 * kPackRows));
  const __m256i hi = _mm256_loadu_si256((const __m256i*)(g1 + j * 2 * kPackRows));
  return __builtin_bit_cast(__m512bh, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

// Elements 2j, 2j + 1 of the bf16 row x in every dword.
inline __m512bh bcast_pair(const bf16_t* x, int64_t j) {
  uint32_t v;
  __builtin_memcpy(&v, x + 2 * j, sizeof v);
  return __builtin_bit_cast(__m512bh, _mm512_set1_epi32((int)v));
}

// P pairs x T tokens from the group of row r0 at w. Half: the last pair is
// one group alone, loaded into both halves; only lanes 0..7 are kept.
template <int P, int T, bool Half>
void tile_bf16x8(const bf16_t* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows, int64_t r0,
                 float* y) {
  const size_t gs = (size_t)cols * kPackRows;  // bf16 per group
  const bf16_t* g[P][2];                       // [pair][half] group base
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    g[p][0] = w + 2 * p * gs;
    g[p][1] = Half && p == P - 1 ? g[p][0] : g[p][0] + gs;
  }
  const bf16_t* x[T];  // [token] activation row, [cols] bf16
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) x[t] = (const bf16_t*)(xa + (t0 + t) * xs);
  __m512 acc[P][T];
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
  for (int64_t j = 0; j < cols / 2; ++j) {
    if constexpr (T == 1)  // decode: a group's stream, 32 bytes a column pair, a line ahead every 2
      if ((j & 1) == 0) {
        #pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
          tiling::prefetch_stream<64>(g[p][0] + j * 2 * kPackRows);
          if (!(Half && p == P - 1)) tiling::prefetch_stream<64>(g[p][1] + j * 2 * kPackRows);
        }
      }
    __m512bh wv[P];
    #pragma GCC unroll 8
    for (int p = 0; p < P; ++p) wv[p] = load_pair(g[p][0], g[p][1], j);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512bh xb = bcast_pair(x[t], j);
      #pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[p][t] = _mm512_dpbf16_ps(acc[p][t], wv[p], xb);
    }
  }
  store_tile<P, T, Half>(acc, y, rows, r0, t0);
}

// n groups (1..4, or 1..8 for T = 1) from w on, as one tile.
template <int T>
void bf16x8_groups(int n, const bf16_t* w, int64_t cols, const uint8_t* xa, size_t xs, int64_t t0, int64_t rows,
                   int64_t r0, float* y) {
  switch (n) {
    case 1: return tile_bf16x8<1, T, true>(w, cols, xa, xs, t0, rows, r0, y);
    case 2: return tile_bf16x8<1, T, false>(w, cols, xa, xs, t0, rows, r0, y);
    case 3: return tile_bf16x8<2, T, true>(w, cols, xa, xs, t0, rows, r0, y);
    case 4: return tile_bf16x8<2, T, false>(w, cols, xa, xs, t0, rows, r0, y);
    default: break;
  }
  if constexpr (T == 1) {
    switch (n) {
      case 5: return tile_bf16x8<3, 1, true>(w, cols, xa, xs, t0, rows, r0, y);
      case 6: return tile_bf16x8<3, 1, false>(w, cols, xa, xs, t0, rows, r0, y);
      case 7: return tile_bf16x8<4, 1, true>(w, cols, xa, xs, t0, rows, r0, y);
      case 8: return tile_bf16x8<4, 1, false>(w, cols, xa, xs, t0, rows, r0, y);
      default: break;
    }
  }
}

void gemm_bf16x8(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                 int64_t t1, float* y) {
  const bf16_t* base = (const bf16_t*)W.data;  // group of row r at base + r * cols
  const int64_t cols = W.cols;
  if (t1 - t0 == 1) {  // decode: 8 groups at once
    for (int64_t r = r0; r < r1; r += 8 * kPackRows)
      bf16x8_groups<1>((int)(min64(r1 - r, 8 * kPackRows) / kPackRows), base + r * cols, cols, xa, xs, t0, W.rows,
                       r, y);
    return;
  }
  for (int64_t r = r0; r < r1; r += 4 * kPackRows) {
    const int n = (int)(min64(r1 - r, 4 * kPackRows) / kPackRows);
    const bf16_t* w = base + r * cols;
    int64_t t = t0;
    for (; t + kTP <= t1; t += kTP) bf16x8_groups<kTP>(n, w, cols, xa, xs, t, W.rows, r, y);
    if (t + 4 <= t1) {  // token remainder (1..7) as tiles of 4, 2, 1
      bf16x8_groups<4>(n, w, cols, xa, xs, t, W.rows, r, y);
      t += 4;
    }
    if (t + 2 <= t1) {
      bf16x8_groups<2>(n, w, cols, xa, xs, t, W.rows, r, y);
      t += 2;
    }
    if (t < t1) bf16x8_groups<1>(n, w, cols, xa, xs, t, W.rows, r, y);
  }
}

}  // namespace

GemmFn gemm_kernel_bf16act_avx512bf16(GgmlType t) {
  return t == GgmlType::BF16 ? Gemm<TileBf16, void>::gemm : nullptr;
}

GemmFn gemm_kernel_packed_bf16act_avx512bf16(GgmlType t) { return t == GgmlType::BF16 ? gemm_bf16x8 : nullptr; }

}  // namespace kvforge::KVFORGE_AVX512_NS
