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
#include "ops/tiles16_avx512.h"
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

// ---- packed BF16 ([rows/64][cols/2][64][2], ops/weight_pack.h) -----------
// The tiles of ops/tiles16_avx512.h, a step per column pair: dword i of a
// block's column pair j holds row 64b+i's elements 2j (low half) and
// 2j + 1, exactly a vdpbf16ps operand, so a pair of groups is one 64-byte
// load; against the token's elements 2j, 2j + 1 broadcast to every dword
// each lane adds its own row's two products: no horizontal sums, no
// widening. Each output is the one chain acc = dpbf16(acc, w_j, x_j),
// j = 0..cols/2-1 in order, whatever the tile (batch invariant); against
// plain rows that is another order of the same exact products (the same
// tolerance).
struct Bf16Steps {
  using Elem = bf16_t;
  static constexpr size_t kStride = 2 * kRows16;  // a block's column pair: 128 bf16
  static constexpr int kColsPerStep = 2;
  template <bool Half>
  static __m512bh load(const bf16_t* p) {
    if constexpr (Half) return __builtin_bit_cast(__m512bh, _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)p)));
    else return load_bf16x32(p);
  }
  static __m512bh bcast(const uint8_t* x, int64_t j) {  // elements 2j, 2j + 1 of the bf16 row in every dword
    uint32_t v;
    __builtin_memcpy(&v, x + 4 * j, sizeof v);
    return __builtin_bit_cast(__m512bh, _mm512_set1_epi32((int)v));
  }
  static __m512 madd(__m512 acc, __m512bh w, __m512bh x) { return _mm512_dpbf16_ps(acc, w, x); }
};

}  // namespace

GemmFn gemm_kernel_bf16act_avx512bf16(GgmlType t) {
  return t == GgmlType::BF16 ? Gemm<TileBf16, void>::gemm : nullptr;
}

GemmFn gemm_kernel_packed_bf16act_avx512bf16(GgmlType t) { return t == GgmlType::BF16 ? gemm16<Bf16Steps> : nullptr; }

}  // namespace kvforge::KVFORGE_AVX512_NS
