// AVX2 (+F16C) chunk kernel of the fused attention (see ops/attention.h):
// per tile, the scores of up to 4 query heads are computed from each K row
// loaded once (several rows at a time, reduced without per-score horizontal
// sums), then one online-softmax update per head, then each V row is loaded
// once and accumulated into all those heads. Every step has a fixed order
// that depends only on the chunk, never on the batch.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "ops/attention.h"
#include "ops/attention_avx2.h"
#include "ops/attention_chunk_x86.h"
#include "ops/simd_math_avx2.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

// s[g][j + r] = scale * q[g].k for R consecutive rows (from row j of the
// tile starting at r0) and G heads: each K vector is loaded once for all G
// heads and each query vector once for all R rows; per score, lane i is one
// fma chain over the column blocks in order, then reduce4.
template <class KV, int G, int R>
inline void score_rows(const float* const* q, int dk, const void* kbase, size_t ks, int32_t r0, int j, float scale,
                       float (*s)[kAttnTile]) {
  __m256 acc[G][R];
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; ++r) acc[g][r] = _mm256_setzero_ps();
  const size_t row = (size_t)(r0 + j) * ks;
  for (int c = 0; c < dk; c += 8) {
    __m256 qv[G];
    for (int g = 0; g < G; ++g) qv[g] = _mm256_loadu_ps(q[g] + c);
    for (int r = 0; r < R; ++r) {
      const __m256 k = KV::load(kbase, row + r * ks + c);
      for (int g = 0; g < G; ++g) acc[g][r] = _mm256_fmadd_ps(qv[g], k, acc[g][r]);
    }
  }
  const __m128 vs = _mm_set1_ps(scale);
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; r += 4) {
      auto a = [&](int i) { return acc[g][std::min(r + i, R - 1)]; };
      const __m128 x = _mm_mul_ps(reduce4(a(0), a(1), a(2), a(3)), vs);
      if (r + 4 <= R) {
        _mm_storeu_ps(&s[g][j + r], x);
      } else {
        alignas(16) float t[4];
        _mm_store_ps(t, x);
        for (int i = 0; r + i < R; ++i) s[g][j + r + i] = t[i];
      }
    }
}

// One tile [r0, r0 + n) of the rows for G query heads, head g seeing its
// first ng[g]: scores, the online-softmax update, the V sums. part:
// [G][2 + dv] each head's running (max, denominator, sum of V), updated.
// Register blocks (G heads x R rows for the scores, G heads x U column
// vectors for V) keep 8-12 independent fma chains; none changes a bit.
// ahead (or nullptr): asks for the next tile's K rows with the scores, R at
// a time, and its V rows with the first V pass, 8 at a time.
template <class KV, int G>
void tile_pass(const float* const* q, const int* ng, int dk, int dv, const void* kbase, size_t ks, const void* vbase,
               size_t vs, int32_t r0, int n, float scale, float* part, const RowsAhead* ahead) {
  constexpr int R = G == 1 ? 8 : G == 2 ? 4 : G == 3 ? 3 : 2;
  constexpr int U = G == 1 ? 8 : G <= 3 ? 4 : 2;
  alignas(32) float s[G][kAttnTile];  // scores, then probabilities
  int j = 0;
  for (; j + R <= n; j += R) {
    if (ahead) ahead->k_rows(r0 + kAttnTile + j, R);
    score_rows<KV, G, R>(q, dk, kbase, ks, r0, j, scale, s);
  }
  if (ahead && j < n) ahead->k_rows(r0 + kAttnTile + j, n - j);
  for (; j < n; ++j) score_rows<KV, G, 1>(q, dk, kbase, ks, r0, j, scale, s);
  float corr[G];
  int n_all = n;  // rows every head sees
  for (int g = 0; g < G; ++g) {
    n_all = std::min(n_all, ng[g]);
    for (int i = ng[g]; i < kAttnTile; ++i) s[g][i] = -INFINITY;  // exp -> 0
    float* pg = part + (size_t)g * (2 + dv);
    corr[g] = online_softmax_tile_avx2(s[g], pg[0], pg[1]);
  }
  int col = 0;
  for (; col + 8 * U <= dv; col += 8 * U, ahead = nullptr)
    accumulate_v<KV, G, U>(vbase, vs, r0, n_all, ng, dv, col, s, corr, part, ahead);
  for (; col < dv; col += 8, ahead = nullptr)
    accumulate_v<KV, G, 1>(vbase, vs, r0, n_all, ng, dv, col, s, corr, part, ahead);
}

// Every head over one tile, in passes of up to 4 heads (of 3 when there are
// more than 4: 3 x 3 score blocks keep the query vectors in registers, where
// 4 x 2 ones load them again for each fma).
struct TilesAvx2 {
  static constexpr bool kAsksAhead = true;  // the first pass asks for the next tile's rows
  template <class KV>
  static void heads(const float* const* q, const int* ng, int n_heads, int dk, int dv, const void* kbase, size_t ks,
                    const void* vbase, size_t vs, int32_t r0, int n, float scale, float* part,
                    const RowsAhead* ahead) {
    const int width = n_heads > 4 ? 3 : 4;
    for (int h0 = 0; h0 < n_heads; h0 += width, ahead = nullptr) {
      float* ph = part + (size_t)h0 * (2 + dv);
      switch (std::min(width, n_heads - h0)) {
        case 1: tile_pass<KV, 1>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        case 2: tile_pass<KV, 2>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        case 3: tile_pass<KV, 3>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
        default: tile_pass<KV, 4>(q + h0, ng + h0, dk, dv, kbase, ks, vbase, vs, r0, n, scale, ph, ahead); break;
      }
    }
  }
};


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
          if (two) accumulate_v<RowF32, G2, 2>(rows, rs, 0, na, &ng[h0], dv, col, s + h0, &corr[h0], ph, nullptr);
          else accumulate_v<RowF32, G2, 1>(rows, rs, 0, na, &ng[h0], dv, col, s + h0, &corr[h0], ph, nullptr);
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
    case KvStorage::F32: chunk_heads<TilesAvx2, RowF32>(q, r1, n_heads, view, c, scale, part, nullptr); return true;
    case KvStorage::F16: {
      thread_local std::vector<float> stage;  // chunk_heads' staged rows
      if (stage_uses(n_heads, RowF16{})) stage.resize((size_t)kAttnTile * (view.head_dim_k + view.head_dim_v));
      chunk_heads<TilesAvx2, RowF16>(q, r1, n_heads, view, c, scale, part, stage.data());
      return true;
    }
    default: return false;
  }
}

}  // namespace kvforge
