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
  static __m256 load(const void* base, size_t i) { return _mm256_loadu_ps((const float*)base + i); }
};
struct RowF16 {
  static __m256 load(const void* base, size_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const fp16_t*)base + i)));
  }
};

// acc[g][u] (U vectors of 8 columns starting at col) += p[g][j] * v_j for the
// n rows of the tile; acc lives in part between column blocks.
template <class KV, int G, int U>
inline void accumulate_v(const void* vbase, int32_t r0, int n, int dv, int col, const float (*p)[kAttnTile],
                         const float* corr, float* part) {
  __m256 acc[G][U];
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u)
      acc[g][u] = _mm256_mul_ps(_mm256_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u),
                                _mm256_set1_ps(corr[g]));
  for (int j = 0; j < n; ++j) {
    __m256 pj[G];
    for (int g = 0; g < G; ++g) pj[g] = _mm256_set1_ps(p[g][j]);
    const size_t row = (size_t)(r0 + j) * dv + col;
    for (int u = 0; u < U; ++u) {
      const __m256 v = KV::load(vbase, row + 8 * u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm256_fmadd_ps(pj[g], v, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u) _mm256_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u, acc[g][u]);
}

template <class KV, int G>
void chunk(const float* q, int dk, int dv, const KvSegment& seg, int32_t c0, int32_t c1, float scale,
           float* part) {
  alignas(32) float s[G][kAttnTile];  // scores, then probabilities
  float m[G], l[G], corr[G];
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
    std::fill(part + (size_t)g * (2 + dv) + 2, part + (size_t)(g + 1) * (2 + dv), 0.0f);
  }
  for (int32_t r0 = c0; r0 < c1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c1 - r0);
    // Scores: two accumulators per head (even/odd 8-column blocks), fixed sum.
    for (int j = 0; j < n; ++j) {
      const size_t row = (size_t)(r0 + j) * dk;
      __m256 a0[G], a1[G];
      for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm256_setzero_ps();
      int c = 0;
      for (; c + 16 <= dk; c += 16) {
        const __m256 k0 = KV::load(seg.k, row + c), k1 = KV::load(seg.k, row + c + 8);
        for (int g = 0; g < G; ++g) {
          a0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)g * dk + c), k0, a0[g]);
          a1[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)g * dk + c + 8), k1, a1[g]);
        }
      }
      if (c < dk) {  // dk % 16 == 8
        const __m256 k0 = KV::load(seg.k, row + c);
        for (int g = 0; g < G; ++g) a0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)g * dk + c), k0, a0[g]);
      }
      for (int g = 0; g < G; ++g) s[g][j] = hsum256_ps(_mm256_add_ps(a0[g], a1[g])) * scale;
    }
    for (int g = 0; g < G; ++g)
      for (int j = n; j < kAttnTile; ++j) s[g][j] = -INFINITY;  // exp -> 0
    // Online softmax update per head.
    for (int g = 0; g < G; ++g) corr[g] = online_softmax_tile_avx2(s[g], m[g], l[g]);
    // Weighted V, in column blocks of 32 (then 8) so the accumulators stay in registers.
    int col = 0;
    for (; col + 32 <= dv; col += 32) accumulate_v<KV, G, 4>(seg.v, r0, n, dv, col, s, corr, part);
    for (; col < dv; col += 8) accumulate_v<KV, G, 1>(seg.v, r0, n, dv, col, s, corr, part);
  }
  for (int g = 0; g < G; ++g) {
    part[(size_t)g * (2 + dv)] = m[g];
    part[(size_t)g * (2 + dv) + 1] = l[g];
  }
}

template <class KV>
void chunk_groups(const float* q, int n_group, int dk, int dv, const KvSegment& seg, const AttnChunk& c,
                  float scale, float* part) {
  // Up to 4 heads per pass keep the accumulators in registers; larger groups
  // take several passes over the rows (a fixed split: n_group is a model
  // constant).
  for (int g0 = 0; g0 < n_group; g0 += 4) {
    const float* qg = q + (size_t)g0 * dk;
    float* pg = part + (size_t)g0 * (2 + dv);
    switch (std::min(4, n_group - g0)) {
      case 1: chunk<KV, 1>(qg, dk, dv, seg, c.r0, c.r1, scale, pg); break;
      case 2: chunk<KV, 2>(qg, dk, dv, seg, c.r0, c.r1, scale, pg); break;
      case 3: chunk<KV, 3>(qg, dk, dv, seg, c.r0, c.r1, scale, pg); break;
      default: chunk<KV, 4>(qg, dk, dv, seg, c.r0, c.r1, scale, pg); break;
    }
  }
}

}  // namespace

bool attend_chunk_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                       float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  if (dk % 8 != 0 || dv % 8 != 0) return false;
  const KvSegment& seg = view.segments[c.seg];
  switch (view.storage) {
    case KvStorage::F32: chunk_groups<RowF32>(q, n_group, dk, dv, seg, c, scale, part); return true;
    case KvStorage::F16: chunk_groups<RowF16>(q, n_group, dk, dv, seg, c, scale, part); return true;
    default: return false;
  }
}

}  // namespace kvforge
