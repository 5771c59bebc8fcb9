// AVX2 (+F16C) chunk kernel of the fused attention (see ops/attention.h):
// per tile, the scores of all G query heads of the group are computed from
// each K row loaded once, then one online-softmax update per head, then each
// V row is loaded once and accumulated into all G heads. Every step has a
// fixed order that depends only on the chunk, never on the batch.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ops/attention.h"
#include "ops/attention_avx2.h"
#include "ops/simd_math_avx2.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

struct RowF32 {
  using Elem = float;
  static __m256 load(const void* base, size_t i) { return _mm256_loadu_ps((const float*)base + i); }
};
struct RowF16 {
  using Elem = fp16_t;
  static __m256 load(const void* base, size_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const fp16_t*)base + i)));
  }
};

// acc[g][u] (U vectors of 8 columns starting at col) += p[g][j] * v_j for the
// tile's rows j < n[g] (vs elements apart); acc lives in part between column blocks. Rows below
// n_all are shared by all heads; the few after it (multi-token prefill, see
// attend_tokens) only by the heads that see them.
template <class KV, int G, int U>
inline void accumulate_v(const void* vbase, size_t vs, int32_t r0, int n_all, const int* n, int dv, int col,
                         const float (*p)[kAttnTile], const float* corr, float* part) {
  __m256 acc[G][U];
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u)
      acc[g][u] = _mm256_mul_ps(_mm256_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u),
                                _mm256_set1_ps(corr[g]));
  for (int j = 0; j < n_all; ++j) {
    __m256 pj[G];
    for (int g = 0; g < G; ++g) pj[g] = _mm256_set1_ps(p[g][j]);
    const size_t row = (size_t)(r0 + j) * vs + col;
    for (int u = 0; u < U; ++u) {
      const __m256 v = KV::load(vbase, row + 8 * u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm256_fmadd_ps(pj[g], v, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int j = n_all; j < n[g]; ++j) {
      const __m256 pj = _mm256_set1_ps(p[g][j]);
      const size_t row = (size_t)(r0 + j) * vs + col;
      for (int u = 0; u < U; ++u) acc[g][u] = _mm256_fmadd_ps(pj, KV::load(vbase, row + 8 * u), acc[g][u]);
    }
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u) _mm256_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u, acc[g][u]);
}

// G heads over rows [c0, r1[g]) of one segment; every r1[g] lies in the last
// tile of [c0, max r1), so the heads share all tiles but that one's tail.
// Head g's arithmetic is the same whatever the other heads are. ks, vs: row
// strides in elements.
template <class KV, int G>
void chunk(const float* const* q, int dk, int dv, size_t ks, size_t vs, const KvSegment& seg, int32_t c0,
           const int32_t* r1, float scale, float* part) {
  alignas(32) float s[G][kAttnTile];  // scores, then probabilities
  float m[G], l[G], corr[G];
  int32_t c1 = c0;
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
    c1 = std::max(c1, r1[g]);
    std::fill(part + (size_t)g * (2 + dv) + 2, part + (size_t)(g + 1) * (2 + dv), 0.0f);
  }
  for (int32_t r0 = c0; r0 < c1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c1 - r0);
    int ng[G], n_all = n;  // rows of the tile each head sees; all heads see n_all
    for (int g = 0; g < G; ++g) {
      ng[g] = std::clamp<int32_t>(r1[g] - r0, 0, n);
      n_all = std::min(n_all, ng[g]);
    }
    // Scores: two accumulators per head (even/odd 8-column blocks), fixed sum.
    for (int j = 0; j < n; ++j) {
      const size_t row = (size_t)(r0 + j) * ks;
      __m256 a0[G], a1[G];
      for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm256_setzero_ps();
      int c = 0;
      for (; c + 16 <= dk; c += 16) {
        const __m256 k0 = KV::load(seg.k, row + c), k1 = KV::load(seg.k, row + c + 8);
        for (int g = 0; g < G; ++g) {
          a0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + c), k0, a0[g]);
          a1[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + c + 8), k1, a1[g]);
        }
      }
      if (c < dk) {  // dk % 16 == 8
        const __m256 k0 = KV::load(seg.k, row + c);
        for (int g = 0; g < G; ++g) a0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + c), k0, a0[g]);
      }
      for (int g = 0; g < G; ++g) s[g][j] = hsum256_ps(_mm256_add_ps(a0[g], a1[g])) * scale;
    }
    for (int g = 0; g < G; ++g)
      for (int j = ng[g]; j < kAttnTile; ++j) s[g][j] = -INFINITY;  // exp -> 0
    // Online softmax update per head.
    for (int g = 0; g < G; ++g) corr[g] = online_softmax_tile_avx2(s[g], m[g], l[g]);
    // Weighted V, in column blocks (32 columns for up to 2 heads, else 16) so
    // the accumulators stay in registers; the block width does not change
    // any column's chain.
    constexpr int U = G <= 2 ? 4 : 2;
    int col = 0;
    for (; col + 8 * U <= dv; col += 8 * U) accumulate_v<KV, G, U>(seg.v, vs, r0, n_all, ng, dv, col, s, corr, part);
    for (; col < dv; col += 8) accumulate_v<KV, G, 1>(seg.v, vs, r0, n_all, ng, dv, col, s, corr, part);
  }
  for (int g = 0; g < G; ++g) {
    part[(size_t)g * (2 + dv)] = m[g];
    part[(size_t)g * (2 + dv) + 1] = l[g];
  }
}

template <class KV>
void chunk_heads(const float* const* q, const int32_t* r1, int n_heads, const KvView& view, const AttnChunk& c,
                 float scale, float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const size_t ks = view.k_stride / sizeof(typename KV::Elem), vs = view.v_stride / sizeof(typename KV::Elem);
  const KvSegment& seg = view.segment(c.seg);
  const int32_t c0 = c.r0;
  // Up to 4 heads per pass keep the accumulators in registers; more heads
  // take several passes over the rows (each head's arithmetic is the same).
  for (int h0 = 0; h0 < n_heads; h0 += 4) {
    float* ph = part + (size_t)h0 * (2 + dv);
    switch (std::min(4, n_heads - h0)) {
      case 1: chunk<KV, 1>(q + h0, dk, dv, ks, vs, seg, c0, r1 + h0, scale, ph); break;
      case 2: chunk<KV, 2>(q + h0, dk, dv, ks, vs, seg, c0, r1 + h0, scale, ph); break;
      case 3: chunk<KV, 3>(q + h0, dk, dv, ks, vs, seg, c0, r1 + h0, scale, ph); break;
      default: chunk<KV, 4>(q + h0, dk, dv, ks, vs, seg, c0, r1 + h0, scale, ph); break;
    }
  }
}

}  // namespace

bool attend_chunk_heads_avx2(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                             const AttnChunk& c, float scale, float* part) {
  if (view.head_dim_k % 8 != 0 || view.head_dim_v % 8 != 0) return false;
  switch (view.storage) {
    case KvStorage::F32: chunk_heads<RowF32>(q, r1, n_heads, view, c, scale, part); return true;
    case KvStorage::F16: chunk_heads<RowF16>(q, r1, n_heads, view, c, scale, part); return true;
    default: return false;
  }
}

bool attend_chunk_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                       float* part) {
  // Groups wider than kAttnMaxHeads (DeepSeek-V2/V3's 128 MLA heads) run in
  // slices: each head's arithmetic is the same whatever the other heads are.
  const float* qh[kAttnMaxHeads];  // [slice] the group's query heads
  int32_t r1[kAttnMaxHeads];       // [slice] all heads see the whole chunk
  for (int g0 = 0; g0 < n_group; g0 += kAttnMaxHeads) {
    const int ng = std::min(kAttnMaxHeads, n_group - g0);
    for (int g = 0; g < ng; ++g) {
      qh[g] = q + (size_t)(g0 + g) * view.head_dim_k;
      r1[g] = c.r1;
    }
    if (!attend_chunk_heads_avx2(qh, r1, ng, view, c, scale, part + (size_t)g0 * (2 + view.head_dim_v)))
      return false;  // the view's shape or storage: the same for every slice
  }
  return true;
}

}  // namespace kvforge
