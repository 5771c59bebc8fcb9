// AVX-512 chunk kernel of the fused attention over f16/f32 rows: the AVX2
// kernel's arithmetic (attention_avx2.cpp) on 16 lanes, bit for bit, with the
// chunk loop they share (ops/attention_chunk_x86.h).
//  - Scores: a score is 8 fma chains (lane i adds q[c + i] k[c + i] over
//    c = 0, 8, 16, .. in order) whose lanes are added as
//    ((0+1)+(2+3))+((4+5)+(6+7)). A zmm here runs those chains for two rows
//    (row j + p in the low half, j + p + 4 in the high one), so a block of 8
//    rows x G heads takes half the AVX2 kernel's fmas and f16 conversions,
//    and its 8 trees are three in-lane pair adds (shuffles + add, hadd's
//    sums) and one add of 128-bit lanes. A tile's last rows (< 8) take the
//    AVX2 kernel's one-row chains.
//  - V: each column is one fma chain over the rows in order, so 16 columns
//    per zmm give the AVX2 kernel's sums.
//  - The online-softmax step is the AVX2 kernel's (ops/attention_avx2.h),
//    its exps 16 lanes at a time and the heads' corrections in one exp.
// Decode at depth spends about half of its time here (kvforge bench
// --op-times), and the AVX2 kernel was bound by its vector instructions,
// not by memory (kvforge_microbench --benchmark_filter=Gqa).
// Compiled natively and emulated (backend/simd_avx512.h).
#include "backend/simd_avx512.h"

#include <cmath>

#include "ops/attention_avx2.h"
#include "ops/attention_chunk_x86.h"

namespace kvforge::KVFORGE_AVX512_NS {

namespace {

// Row types' 16-lane loads: 16 consecutive elements from i on; 8 from i (low
// half) and 8 from k (high half).
template <class KV>
struct Wide;
template <>
struct Wide<RowF32> {
  static __m512 load16(const void* base, size_t i) { return _mm512_loadu_ps((const float*)base + i); }
  static __m512 load2x8(const void* base, size_t i, size_t k) {
    return from_halves_ps(_mm256_loadu_ps((const float*)base + i), _mm256_loadu_ps((const float*)base + k));
  }
};
template <>
struct Wide<RowF16> {
  static __m512 load16(const void* base, size_t i) {
    return cvtph_ps512(_mm256_loadu_si256((const __m256i*)((const fp16_t*)base + i)));
  }
  static __m512 load2x8(const void* base, size_t i, size_t k) {
    const fp16_t* b = (const fp16_t*)base;
    const __m128i lo = _mm_loadu_si128((const __m128i*)(b + i)), hi = _mm_loadu_si128((const __m128i*)(b + k));
    return cvtph_ps512(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  }
};

// _mm256_hadd_ps per 128-bit lane: [a0+a1, a2+a3, b0+b1, b2+b3].
inline __m512 hadd512(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

// The 8 scores of a[p] = (rows p | p + 4), p = 0..3, in row order: reduce4's
// tree for each (its hadds, then the two 128-bit halves of each row added).
inline __m256 reduce8(const __m512* a) {
  // 128-bit lanes of u: rows 0-3 (lanes 0..3 of each chain), rows 0-3
  // (lanes 4..7), rows 4-7 (0..3), rows 4-7 (4..7).
  const __m512 u = hadd512(hadd512(a[0], a[1]), hadd512(a[2], a[3]));
  const __m512i w = _mm512_castps_si512(u);  // (SIMDe 0.7.4 has no _mm512_shuffle_f32x4 alias)
  const __m512 t = _mm512_castsi512_ps(_mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(3, 1, 2, 0)));  // lanes 0, 2, 1, 3
  return _mm256_add_ps(lo256_ps(t), hi256_ps(t));
}

// s[g][j .. j + 7] = scale * q[g].k for 8 rows from row j of the tile at r0.
template <class KV, int G>
inline void score8(const float* const* q, int dk, const void* kbase, size_t ks, int32_t r0, int j, float scale,
                   float (*s)[kAttnTile]) {
  __m512 acc[G][4];
  for (int g = 0; g < G; ++g)
    for (int p = 0; p < 4; ++p) acc[g][p] = _mm512_setzero_ps();
  const size_t row = (size_t)(r0 + j) * ks;
  for (int c = 0; c < dk; c += 8) {
    __m512 qv[G];
    for (int g = 0; g < G; ++g) qv[g] = _mm512_broadcast_f32x8(_mm256_loadu_ps(q[g] + c));
    for (int p = 0; p < 4; ++p) {
      const __m512 k = Wide<KV>::load2x8(kbase, row + p * ks + c, row + (p + 4) * ks + c);
      for (int g = 0; g < G; ++g) acc[g][p] = _mm512_fmadd_ps(qv[g], k, acc[g][p]);
    }
  }
  const __m256 vs = _mm256_set1_ps(scale);
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(&s[g][j], _mm256_mul_ps(reduce8(acc[g]), vs));
}

// One row: the AVX2 kernel's chain and tree.
template <class KV, int G>
inline void score1(const float* const* q, int dk, const void* kbase, size_t ks, int32_t r0, int j, float scale,
                   float (*s)[kAttnTile]) {
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  const size_t row = (size_t)(r0 + j) * ks;
  for (int c = 0; c < dk; c += 8) {
    const __m256 k = KV::load(kbase, row + c);
    for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + c), k, acc[g]);
  }
  for (int g = 0; g < G; ++g)
    s[g][j] = _mm_cvtss_f32(_mm_mul_ps(reduce4(acc[g], acc[g], acc[g], acc[g]), _mm_set1_ps(scale)));
}

// accumulate_v (ops/attention_chunk_x86.h) on U vectors of 16 columns;
// ahead: asks for the next tile's V rows, 8 at a time.
template <class KV, int G, int U>
inline void accumulate_v16(const void* vbase, size_t vs, int32_t r0, int n_all, const int* n, int dv, int col,
                           const float (*p)[kAttnTile], const float* corr, float* part, const RowsAhead* ahead) {
  __m512 acc[G][U];
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u)
      acc[g][u] = _mm512_mul_ps(_mm512_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 16 * u),
                                _mm512_set1_ps(corr[g]));
  for (int j = 0; j < n_all; ++j) {
    if (ahead && j % 8 == 0) ahead->v_rows(r0 + kAttnTile + j, 8);
    __m512 pj[G];
    for (int g = 0; g < G; ++g) pj[g] = _mm512_set1_ps(p[g][j]);
    const size_t row = (size_t)(r0 + j) * vs + col;
    for (int u = 0; u < U; ++u) {
      const __m512 v = Wide<KV>::load16(vbase, row + 16 * u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm512_fmadd_ps(pj[g], v, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u) _mm512_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 16 * u, acc[g][u]);
  for (int g = 0; g < G; ++g)
    for (int j = n_all; j < n[g]; ++j) {
      const __m512 pj = _mm512_set1_ps(p[g][j]);
      const size_t row = (size_t)(r0 + j) * vs + col;
      for (int u = 0; u < U; ++u) {
        float* a = part + (size_t)g * (2 + dv) + 2 + col + 16 * u;
        _mm512_storeu_ps(a, _mm512_fmadd_ps(pj, Wide<KV>::load16(vbase, row + 16 * u), _mm512_loadu_ps(a)));
      }
    }
}

// exp256_ps (ops/simd_math_avx2.h) on 16 lanes: the same steps per lane.
inline __m512 exp512_ps(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 is_zero = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(cvtps_epi32_512(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mov_ps((__mmask16)~is_zero, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
}

// online_softmax_tile_avx2 (ops/attention_avx2.h) for the G heads of a
// tile, with the same steps per head: the max in the same order, the
// probabilities 16 at a time, their sum in the same 8-lane chain, and the
// G corrections exp(m_old - m_new) as the lanes of one exp.
template <int G>
inline void softmax_tile(float (*s)[kAttnTile], float* part, int dv, float* corr) {
  static_assert(kAttnTile == 32 && G <= 8, "two zmm of scores per head; one ymm of corrections");
  float m_new[G];
  alignas(32) float d[8] = {};  // [G] m_old - m_new
  for (int g = 0; g < G; ++g) {
    __m256 mx = _mm256_load_ps(s[g]);
    for (int j = 8; j < kAttnTile; j += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(s[g] + j));
    const float m = part[(size_t)g * (2 + dv)], tile_max = hmax256_ps(mx);
    m_new[g] = m < tile_max ? tile_max : m;
    d[g] = m - m_new[g];
  }
  _mm256_storeu_ps(d, exp256_ps(_mm256_load_ps(d)));
  for (int g = 0; g < G; ++g) {
    corr[g] = d[g];
    const __m512 vm = _mm512_set1_ps(m_new[g]);
    const __m512 p0 = exp512_ps(_mm512_sub_ps(_mm512_load_ps(s[g]), vm));
    const __m512 p1 = exp512_ps(_mm512_sub_ps(_mm512_load_ps(s[g] + 16), vm));
    _mm512_store_ps(s[g], p0);
    _mm512_store_ps(s[g] + 16, p1);
    __m256 sum = _mm256_add_ps(_mm256_setzero_ps(), lo256_ps(p0));
    sum = _mm256_add_ps(sum, hi256_ps(p0));
    sum = _mm256_add_ps(sum, lo256_ps(p1));
    sum = _mm256_add_ps(sum, hi256_ps(p1));
    float* pg = part + (size_t)g * (2 + dv);
    pg[1] = pg[1] * corr[g] + hsum256_ps(sum);
    pg[0] = m_new[g];
  }
}

// tile_pass of the AVX2 kernel: one tile [r0, r0 + n) for G query heads;
// ahead (or nullptr): asks for the next tile's K rows 8 at a time, with
// the scores, and its V rows likewise, with the sums.
template <class KV, int G>
void tile_pass(const float* const* q, const int* ng, int dk, int dv, const void* kbase, size_t ks, const void* vbase,
               size_t vs, int32_t r0, int n, float scale, float* part, const RowsAhead* ahead) {
  alignas(64) float s[G][kAttnTile];  // scores, then probabilities
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    if (ahead) ahead->k_rows(r0 + kAttnTile + j, 8);
    score8<KV, G>(q, dk, kbase, ks, r0, j, scale, s);
  }
  if (ahead && j < n) ahead->k_rows(r0 + kAttnTile + j, n - j);
  for (; j < n; ++j) score1<KV, G>(q, dk, kbase, ks, r0, j, scale, s);
  float corr[G];
  int n_all = n;  // rows every head sees
  for (int g = 0; g < G; ++g) {
    n_all = ng[g] < n_all ? ng[g] : n_all;
    for (int i = ng[g]; i < kAttnTile; ++i) s[g][i] = -INFINITY;  // exp -> 0
  }
  softmax_tile<G>(s, part, dv, corr);
  int col = 0;
  for (; col + 64 <= dv; col += 64, ahead = nullptr)  // the first pass asks for the V rows
    accumulate_v16<KV, G, 4>(vbase, vs, r0, n_all, ng, dv, col, s, corr, part, ahead);
  for (; col + 16 <= dv; col += 16, ahead = nullptr)
    accumulate_v16<KV, G, 1>(vbase, vs, r0, n_all, ng, dv, col, s, corr, part, ahead);
  if (col < dv) accumulate_v<KV, G, 1>(vbase, vs, r0, n_all, ng, dv, col, s, corr, part, ahead);  // dv % 16 == 8
}

// Every head over one tile, in passes of up to 4 heads (4 x 4 score
// accumulators, 4 query vectors: 24 of the 32 registers).
struct TilesAvx512 {
  static constexpr bool kAsksAhead = true;  // the first pass asks for the next tile's rows
  template <class KV>
  static void heads(const float* const* q, const int* ng, int n_heads, int dk, int dv, const void* kbase, size_t ks,
                    const void* vbase, size_t vs, int32_t r0, int n, float scale, float* part,
                    const RowsAhead* ahead) {
    for (int h0 = 0; h0 < n_heads; h0 += 4, ahead = nullptr) {
      float* ph = part + (size_t)h0 * (2 + dv);
      switch (n_heads - h0) {
        case 1: tile_pass<KV, 1>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        case 2: tile_pass<KV, 2>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        case 3: tile_pass<KV, 3>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        default: tile_pass<KV, 4>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
      }
    }
  }
};

// The staged rows of chunk_heads (f16 rows, more than 4 heads: prefill),
// per thread; a plain array, not a std::vector (see chunk_heads' header).
constexpr int kMaxDim = 256;
thread_local float g_stage[kAttnTile * 2 * kMaxDim];

}  // namespace

bool attend_chunk_heads_avx512(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                               const AttnChunk& c, float scale, float* part) {
  if (view.v_in_k || view.head_dim_k % 8 != 0 || view.head_dim_v % 8 != 0 || view.head_dim_k > kMaxDim ||
      view.head_dim_v > kMaxDim)
    return false;
  switch (view.storage) {
    case KvStorage::F32: chunk_heads<TilesAvx512, RowF32>(q, r1, n_heads, view, c, scale, part, nullptr); return true;
    case KvStorage::F16: chunk_heads<TilesAvx512, RowF16>(q, r1, n_heads, view, c, scale, part, g_stage); return true;
    default: return false;
  }
}

}  // namespace kvforge::KVFORGE_AVX512_NS
