// AVX2 (+F16C) chunk kernel of the fused attention over quantized K/V rows
// (Q8_0, Q4_0, optionally Hadamard-rotated; see ops/attention_quant.h).
//
// Scores come from the same place as in the scalar kernel (q rotated and
// quantized to 8-bit blocks once per call, the integer GEMM kernel over a
// tile of K rows), so they are bit-identical to it. What differs:
//  - the online-softmax update is vectorized (ops/attention_avx2.h, the
//    helper of the f16/f32 kernel);
//  - V is never dequantized to an f32 tile: each 32-element block of a V row
//    is widened to 4 vectors of integers-as-floats and accumulated into up to
//    4 query heads at once with weight p * d (softmax probability times the
//    block's scale), so a row is read and converted once for the group.
// Every step has a fixed order that depends only on the chunk (batch
// invariance, ops/attention.h).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/attention.h"
#include "ops/attention_avx2.h"
#include "ops/attention_quant.h"
#include "ops/hadamard.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

namespace {

inline float block_scale(const uint8_t* blk) {
  uint16_t h;
  std::memcpy(&h, blk, 2);  // fp16 d first in both formats
  return _cvtsh_ss(h);
}

// Q8_0: x[i] = d * qs[i]. load(blk, i): qs[8i .. 8i+7] as floats.
struct VQ8 {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static __m256 load(const uint8_t* blk, int i) {
    const __m128i q = _mm_loadl_epi64((const __m128i*)(blk + 2 + 8 * i));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
};

// Q4_0: x[i] = d * (q[i] - 8), q[i] the low nibble of qs[i] for i < 16, the
// high nibble of qs[i - 16] after. load(blk, i): q[8i .. 8i+7] - 8 as floats.
struct VQ4 {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static __m256 load(const uint8_t* blk, int i) {
    __m128i b = _mm_loadl_epi64((const __m128i*)(blk + 2 + 8 * (i & 1)));
    if (i >= 2) b = _mm_srli_epi16(b, 4);
    b = _mm_sub_epi8(_mm_and_si128(b, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  }
};

// acc[g] (the 32 columns of V block `blk_col` for G heads) = acc[g] * corr[g]
// + sum_j p[g][j] * d_j * q_j over the n rows of the tile.
template <class V, int G>
inline void accumulate_block(const uint8_t* vtile, size_t v_row, int n, int blk_col, int dv,
                             const float (*p)[kAttnTile], const float* corr, float* part) {
  __m256 acc[G][4];
  const int col = blk_col * QK;
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < 4; ++u)
      acc[g][u] = _mm256_mul_ps(_mm256_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u),
                                _mm256_set1_ps(corr[g]));
  const uint8_t* blk = vtile + (size_t)blk_col * V::kBytes;
  for (int j = 0; j < n; ++j, blk += v_row) {
    const float d = block_scale(blk);
    __m256 w[G];
    for (int g = 0; g < G; ++g) w[g] = _mm256_set1_ps(p[g][j] * d);
    for (int u = 0; u < 4; ++u) {
      const __m256 x = V::load(blk, u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm256_fmadd_ps(w[g], x, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < 4; ++u) _mm256_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u, acc[g][u]);
}

// Softmax update and weighted V of G (<= 4) heads for one tile. s: their
// scaled scores [G][kAttnTile], -inf padded; m, l: their running max and
// denominator; part: their partials (acc updated here, m and l at the end).
template <class V, int G>
void tile_heads(float (*s)[kAttnTile], float* m, float* l, const uint8_t* vtile, size_t v_row, int n, int dv,
                float* part) {
  float corr[G];
  for (int g = 0; g < G; ++g) corr[g] = online_softmax_tile_avx2(s[g], m[g], l[g]);
  for (int b = 0; b < dv / QK; ++b) accumulate_block<V, G>(vtile, v_row, n, b, dv, s, corr, part);
}

template <class V>
void chunk(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const GgmlType type = kv_storage_type(view.storage);
  const size_t k_row = kv_row_bytes(view.storage, dk), v_row = kv_row_bytes(view.storage, dv);
  const size_t qa_row = (size_t)(dk / QK) * sizeof(BlockQ8A);
  const KvSegment& seg = view.segments[c.seg];
  thread_local std::vector<float> qr, sc, ml;
  thread_local std::vector<uint8_t> qa;
  struct alignas(32) Tile {
    float s[kAttnTile];
  };
  thread_local std::vector<Tile> st;
  qr.assign(q, q + (size_t)n_group * dk);  // [n_group][dk] q, rotated like the rows
  qa.resize((size_t)n_group * qa_row);     // [n_group][dk/32] BlockQ8A
  sc.resize((size_t)n_group * kAttnTile);  // [n_group][n] scores from the GEMM kernel
  st.resize(n_group);                      // [n_group][kAttnTile] scaled scores, then probabilities
  ml.resize((size_t)2 * n_group);          // running max [n_group], then denominator [n_group]
  for (int g = 0; g < n_group; ++g) {
    float* qg = &qr[(size_t)g * dk];
    if (view.hadamard) hadamard_rotate(qg, dk);
    quantize_act_q8a(qg, (BlockQ8A*)&qa[(size_t)g * qa_row], dk);
  }
  const GemmFn dot_tile = gemm_kernel_avx2(type);
  float* m = ml.data();
  float* l = m + n_group;
  for (int g = 0; g < n_group; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
    std::fill(part + (size_t)g * (2 + dv) + 2, part + (size_t)(g + 1) * (2 + dv), 0.0f);
  }
  float(*s)[kAttnTile] = &st[0].s;
  for (int32_t r0 = c.r0; r0 < c.r1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c.r1 - r0);
    const WeightMatrix K{type, n, dk, (const uint8_t*)seg.k + (size_t)r0 * k_row, k_row};
    dot_tile(K, qa.data(), qa_row, 0, n, 0, n_group, sc.data());  // sc[g * n + j]
    for (int g = 0; g < n_group; ++g) {
      for (int j = 0; j < n; ++j) s[g][j] = sc[(size_t)g * n + j] * scale;
      for (int j = n; j < kAttnTile; ++j) s[g][j] = -INFINITY;  // exp -> 0
    }
    const uint8_t* vtile = (const uint8_t*)seg.v + (size_t)r0 * v_row;
    // Up to 4 heads per pass over the tile's V keep the accumulators in
    // registers (a fixed split: n_group is a model constant).
    for (int g0 = 0; g0 < n_group; g0 += 4) {
      float* pg = part + (size_t)g0 * (2 + dv);
      switch (std::min(4, n_group - g0)) {
        case 1: tile_heads<V, 1>(s + g0, m + g0, l + g0, vtile, v_row, n, dv, pg); break;
        case 2: tile_heads<V, 2>(s + g0, m + g0, l + g0, vtile, v_row, n, dv, pg); break;
        case 3: tile_heads<V, 3>(s + g0, m + g0, l + g0, vtile, v_row, n, dv, pg); break;
        default: tile_heads<V, 4>(s + g0, m + g0, l + g0, vtile, v_row, n, dv, pg); break;
      }
    }
  }
  for (int g = 0; g < n_group; ++g) {
    part[(size_t)g * (2 + dv)] = m[g];
    part[(size_t)g * (2 + dv) + 1] = l[g];
  }
}

}  // namespace

bool attend_chunk_quant_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                             float* part) {
  if (view.head_dim_k % QK != 0 || view.head_dim_v % QK != 0) return false;
  if (!gemm_kernel_avx2(kv_storage_type(view.storage))) return false;
  switch (view.storage) {
    case KvStorage::Q8_0: chunk<VQ8>(q, n_group, view, c, scale, part); return true;
    case KvStorage::Q4_0: chunk<VQ4>(q, n_group, view, c, scale, part); return true;
    default: return false;
  }
}

}  // namespace kvforge
