// AVX2 (+F16C) chunk kernel of the fused attention (see ops/attention.h):
// per tile, the scores of all G query heads of the group are computed from
// each K row loaded once, then one online-softmax update per head, then each
// V row is loaded once and accumulated into all G heads. Every step has a
// fixed order that depends only on the chunk, never on the batch.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

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

// Asks for rows [r0, r1) (d elements each, stride elements apart) ahead of
// their use: between two decode steps the weights stream through every
// cache, so a sequence's cached rows come back from memory, and the rows of
// a head are too few for the hardware prefetcher to ramp up.
template <class KV>
inline void prefetch_rows(const void* base, size_t stride, int d, int32_t r0, int32_t r1) {
  const size_t bytes = (size_t)d * sizeof(typename KV::Elem);
  for (int32_t r = r0; r < r1; ++r) {
    const char* row = (const char*)base + (size_t)r * stride * sizeof(typename KV::Elem);
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + o, _MM_HINT_T0);
  }
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
  prefetch_rows<KV>(seg.k, ks, dk, c0, std::min<int32_t>(c0 + kAttnTile, c1));
  for (int32_t r0 = c0; r0 < c1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c1 - r0);
    prefetch_rows<KV>(seg.v, vs, dv, r0, r0 + n);  // used after the scores
    prefetch_rows<KV>(seg.k, ks, dk, r0 + n, std::min<int32_t>(r0 + n + kAttnTile, c1));  // the next tile's
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

// Latent rows (MLA, KvView::v_in_k): every query head of the model reads the
// same rows, so a tile is a small GEMM, S = Q K^T then O += P V, with all
// heads at once. Each row is converted to f32 once per tile (not once per
// group of 4 heads) and reused from L1 by every head; scores take two rows x
// up to 6 heads per pass (15 registers: FMA-bound, where one head per query
// load is load-bound); V accumulates from the f32 rows. Head g's score of
// row j is one chain over the columns in order, hsum'ed, whatever the other
// heads and rows: each head's arithmetic depends only on its query and rows.
template <int G>
void latent_scores(const float* const* q, int dk, const float* rows, size_t rs, int n, float scale,
                   float (*s)[kAttnTile]) {
  int j = 0;
  for (; j + 2 <= n; j += 2) {
    const float* k0 = rows + (size_t)j * rs;
    const float* k1 = k0 + rs;
    __m256 a0[G], a1[G];
    for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm256_setzero_ps();
    for (int c = 0; c < dk; c += 8) {
      const __m256 x0 = _mm256_loadu_ps(k0 + c), x1 = _mm256_loadu_ps(k1 + c);
      for (int g = 0; g < G; ++g) {
        const __m256 qv = _mm256_loadu_ps(q[g] + c);
        a0[g] = _mm256_fmadd_ps(qv, x0, a0[g]);
        a1[g] = _mm256_fmadd_ps(qv, x1, a1[g]);
      }
    }
    for (int g = 0; g < G; ++g) {
      s[g][j] = hsum256_ps(a0[g]) * scale;
      s[g][j + 1] = hsum256_ps(a1[g]) * scale;
    }
  }
  for (; j < n; ++j) {  // the same chains, one row
    const float* k0 = rows + (size_t)j * rs;
    __m256 a0[G];
    for (int g = 0; g < G; ++g) a0[g] = _mm256_setzero_ps();
    for (int c = 0; c < dk; c += 8) {
      const __m256 x0 = _mm256_loadu_ps(k0 + c);
      for (int g = 0; g < G; ++g) a0[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q[g] + c), x0, a0[g]);
    }
    for (int g = 0; g < G; ++g) s[g][j] = hsum256_ps(a0[g]) * scale;
  }
}

template <class KV>
void latent_chunk(const float* const* q, const int32_t* r1, int n_heads, const KvView& view, const AttnChunk& c,
                  float scale, float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const size_t ks = view.k_stride / sizeof(typename KV::Elem);
  const KvSegment& seg = view.segment(c.seg);
  thread_local std::vector<float> tile;       // [kAttnTile][dk] f16 rows as f32
  thread_local std::vector<float> ml;         // [n_heads][2] running max and denominator
  thread_local std::vector<float> sbuf;       // [n_heads][kAttnTile] scores, then probabilities (+8: alignment)
  sbuf.resize((size_t)n_heads * kAttnTile + 8);
  float(*s)[kAttnTile] = (float(*)[kAttnTile])(((uintptr_t)sbuf.data() + 31) & ~(uintptr_t)31);
  ml.assign((size_t)n_heads * 2, 0.0f);
  int32_t c1 = c.r0;
  for (int g = 0; g < n_heads; ++g) {
    ml[2 * g] = -INFINITY;
    c1 = std::max(c1, r1[g]);
    std::fill(part + (size_t)g * (2 + dv) + 2, part + (size_t)(g + 1) * (2 + dv), 0.0f);
  }
  thread_local std::vector<float> corr;  // [n_heads] this tile's rescaling of each head's sum
  thread_local std::vector<int> ng;      // [n_heads] rows of the tile each head sees
  corr.resize(n_heads);
  ng.resize(n_heads);
  for (int32_t r0 = c.r0; r0 < c1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c1 - r0);
    int n_all = n;
    for (int g = 0; g < n_heads; ++g) {
      ng[g] = std::clamp<int32_t>(r1[g] - r0, 0, n);
      n_all = std::min(n_all, ng[g]);
    }
    const float* rows;  // [n][rs] the tile's rows in f32
    size_t rs;
    if constexpr (std::is_same_v<KV, RowF32>) {
      rows = (const float*)seg.k + (size_t)r0 * ks;
      rs = ks;
    } else {
      tile.resize((size_t)kAttnTile * dk);
      for (int j = 0; j < n; ++j)
        for (int col = 0; col < dk; col += 8)
          _mm256_storeu_ps(&tile[(size_t)j * dk + col], KV::load(seg.k, (size_t)(r0 + j) * ks + col));
      rows = tile.data();
      rs = dk;
    }
    for (int h0 = 0; h0 < n_heads; h0 += 6) {
      float(*sh)[kAttnTile] = s + h0;
      switch (std::min(6, n_heads - h0)) {
        case 1: latent_scores<1>(q + h0, dk, rows, rs, n, scale, sh); break;
        case 2: latent_scores<2>(q + h0, dk, rows, rs, n, scale, sh); break;
        case 3: latent_scores<3>(q + h0, dk, rows, rs, n, scale, sh); break;
        case 4: latent_scores<4>(q + h0, dk, rows, rs, n, scale, sh); break;
        case 5: latent_scores<5>(q + h0, dk, rows, rs, n, scale, sh); break;
        default: latent_scores<6>(q + h0, dk, rows, rs, n, scale, sh); break;
      }
    }
    for (int g = 0; g < n_heads; ++g) {
      for (int j = ng[g]; j < kAttnTile; ++j) s[g][j] = -INFINITY;  // exp -> 0
      corr[g] = online_softmax_tile_avx2(s[g], ml[2 * g], ml[2 * g + 1]);
    }
    // V (the rows' first dv values), 4 heads x 16 columns per pass.
    for (int h0 = 0; h0 < n_heads; h0 += 4) {
      float* ph = part + (size_t)h0 * (2 + dv);
      const int gn = std::min(4, n_heads - h0);
      int na = n;
      for (int g = h0; g < h0 + gn; ++g) na = std::min(na, ng[g]);
      for (int col = 0; col < dv; col += 8) {
        const bool two = col + 16 <= dv;
        auto acc = [&]<int G2>() {
          if (two) accumulate_v<RowF32, G2, 2>(rows, rs, 0, na, &ng[h0], dv, col, s + h0, &corr[h0], ph);
          else accumulate_v<RowF32, G2, 1>(rows, rs, 0, na, &ng[h0], dv, col, s + h0, &corr[h0], ph);
        };
        switch (gn) {
          case 1: acc.template operator()<1>(); break;
          case 2: acc.template operator()<2>(); break;
          case 3: acc.template operator()<3>(); break;
          default: acc.template operator()<4>(); break;
        }
        if (two) col += 8;
      }
    }
  }
  for (int g = 0; g < n_heads; ++g) {
    part[(size_t)g * (2 + dv)] = ml[2 * g];
    part[(size_t)g * (2 + dv) + 1] = ml[2 * g + 1];
  }
}

}  // namespace

bool attend_chunk_heads_avx2(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                             const AttnChunk& c, float scale, float* part) {
  if (view.head_dim_k % 8 != 0 || view.head_dim_v % 8 != 0) return false;
  if (view.v_in_k) switch (view.storage) {
      case KvStorage::F32: latent_chunk<RowF32>(q, r1, n_heads, view, c, scale, part); return true;
      case KvStorage::F16: latent_chunk<RowF16>(q, r1, n_heads, view, c, scale, part); return true;
      default: return false;
    }
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
