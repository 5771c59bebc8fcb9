// AVX2 (+F16C) chunk kernel of the fused attention over quantized K/V rows
// (Q8_0, Q4_0, optionally Hadamard-rotated; see ops/attention_quant.h).
//
// q is rotated and quantized to 8-bit blocks once per call, as in the scalar
// kernel, so the integer dot of every (row, head, block) is the same exact
// integer. What differs from the scalar kernel (only in rounding):
//  - scores: a dedicated loop loads each K block once for all (<= 4) heads of
//    the group and takes its integer dot with each (maddubs; Q8_0 with the
//    sign trick, Q4_0 nibbles unsigned with the -8 applied as -8 * sum(q));
//    the lane vectors of 8 rows are reduced together by a hadd tree (integer
//    sums: exact, independent of the neighbouring rows; pads of a partial
//    tile read a zero row), then one multiply by d_k * (d_q * scale) per
//    (row, head, block) and a sum over blocks in order, 8 rows per vector;
//  - the online-softmax update is vectorized (ops/attention_avx2.h, the
//    helper of the f16/f32 kernel);
//  - V is never dequantized to an f32 tile: each 32-element block of a V row
//    is widened to 4 vectors of integers-as-floats and accumulated into up to
//    4 query heads at once with weight w = p * d (softmax probability times
//    the block's scale, computed 8 rows at a time), so a row is read and
//    converted once for the group; Q4_0 nibbles are widened unsigned and the
//    -8 is added once per tile as -8 * sum(w).
// Every step has a fixed order that depends only on the chunk (batch
// invariance, ops/attention.h).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/attention.h"
#include "ops/attention_avx2.h"
#include "ops/attention_chunk_x86.h"
#include "ops/attention_quant.h"
#include "ops/hadamard.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

namespace {

inline uint16_t ld16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// The fp16 block scales (first in both formats) of 8 rows at rows[r] + off, as floats.
inline __m256 scales8(const uint8_t* const* rows, size_t off) {
  return _mm256_cvtph_ps(_mm_setr_epi16(ld16(rows[0] + off), ld16(rows[1] + off), ld16(rows[2] + off),
                                        ld16(rows[3] + off), ld16(rows[4] + off), ld16(rows[5] + off),
                                        ld16(rows[6] + off), ld16(rows[7] + off)));
}

// One 32-element block of a query head: its 8-bit values q and |q|.
struct alignas(32) QBlock {
  int8_t q[QK];
  uint8_t u[QK];
};

// ---- K: integer dots of a K block with a query block ------------------------
// dot(k, qb): 8 int32 lanes whose sum is the exact integer dot product of the
// block (minus kOffset * sum(q) for Q4_0, subtracted after the reduction).
struct KQ8 {  // signed k: maddubs(|q|, k * sign(q)); pairs <= 2 * 127 * 127
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr int kOffset = 0;
  static __m256i load(const uint8_t* blk) { return _mm256_loadu_si256((const __m256i*)(blk + 2)); }
  static __m256i dot(__m256i k, const QBlock& qb) {
    const __m256i q = _mm256_load_si256((const __m256i*)qb.q);
    const __m256i p = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i*)qb.u), _mm256_sign_epi8(k, q));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};
struct KQ4 {  // nibbles 0..15 unsigned: maddubs(k, q) directly; the -8 after
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr int kOffset = 8;
  static __m256i load(const uint8_t* blk) {  // low nibbles (elements 0..15), then the high ones
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(blk + 2)));
    return _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
  }
  static __m256i dot(__m256i k, const QBlock& qb) {
    const __m256i p = _mm256_maddubs_epi16(k, _mm256_load_si256((const __m256i*)qb.q));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};

// Scores of G (<= 4) query heads for 8 rows (rows[r]; pads point at a zero
// row): each K block is loaded once for the G heads, and the 8 rows' lane
// vectors of one head are reduced together by a hadd tree to one vector of 8
// integer dots (exact: the order of integer sums does not matter). Then per
// block one multiply by d_k * (d_q * scale) and a sum over blocks in order:
// lane r depends only on row r.
template <class K, int G>
inline void score8(const uint8_t* const* rows, int nb, const QBlock* qb, const float* dqs, const int32_t* qoff,
                   float* s, int s_stride) {
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    const size_t off = (size_t)b * K::kBytes;
    __m256i hh[G][2];
    for (int half = 0; half < 2; ++half) {
      __m256i h[G][2];
      for (int pr = 0; pr < 2; ++pr) {
        const int r = 4 * half + 2 * pr;
        const __m256i k0 = K::load(rows[r] + off), k1 = K::load(rows[r + 1] + off);
        for (int g = 0; g < G; ++g) {
          const QBlock& q = qb[(size_t)g * nb + b];
          h[g][pr] = _mm256_hadd_epi32(K::dot(k0, q), K::dot(k1, q));
        }
      }
      for (int g = 0; g < G; ++g) hh[g][half] = _mm256_hadd_epi32(h[g][0], h[g][1]);
    }
    const __m256 dk = scales8(rows, off);
    for (int g = 0; g < G; ++g) {
      __m256i I = _mm256_add_epi32(_mm256_permute2x128_si256(hh[g][0], hh[g][1], 0x20),
                                   _mm256_permute2x128_si256(hh[g][0], hh[g][1], 0x31));
      if constexpr (K::kOffset != 0) I = _mm256_sub_epi32(I, _mm256_set1_epi32(qoff[(size_t)g * nb + b]));
      const __m256 w = _mm256_mul_ps(dk, _mm256_set1_ps(dqs[(size_t)g * nb + b]));
      acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I), w, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm256_store_ps(s + (size_t)g * s_stride, acc[g]);
}

// ---- V: blocks widened to floats in registers --------------------------------
// Q8_0: load(blk, i) = qs[8i .. 8i+7] as floats.
struct VQ8 {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr int kOffset = 0;
  static __m256 load(const uint8_t* blk, int i) {
    const __m128i q = _mm_loadl_epi64((const __m128i*)(blk + 2 + 8 * i));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
};
// Q4_0: x[i] = d * (q[i] - 8), q[i] the low nibble of qs[i] for i < 16, the
// high nibble of qs[i - 16] after. load(blk, i) = q[8i .. 8i+7] (unsigned) as
// floats; the -8 is applied once per tile as -8 * sum of the weights.
struct VQ4 {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr int kOffset = 8;
  static __m256 load(const uint8_t* blk, int i) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(blk + 2 + 8 * (i & 1))));
    const __m256i q = i < 2 ? _mm256_and_si256(b, _mm256_set1_epi32(0x0F)) : _mm256_srli_epi32(b, 4);
    return _mm256_cvtepi32_ps(q);
  }
};

// acc[g] (the 32 columns of V block `blk_col` for G heads) = acc[g] * corr[g]
// + sum_j w[g][j] * q_j over the n rows of the tile, w = p * d_v (computed 8
// rows at a time; vrows: the tile's rows, rows >= n point at a zero row, so
// their w = 0 * 0).
template <class V, int G>
inline void accumulate_block(const uint8_t* const* vrows, const uint8_t* vtile, size_t v_row, int n, int blk_col, int dv,
                             const float (*p)[kAttnTile], const float* corr, float* part) {
  alignas(32) float w[G][kAttnTile];
  const size_t off = (size_t)blk_col * V::kBytes;
  __m256 ws[G];
  for (int g = 0; g < G; ++g) ws[g] = _mm256_setzero_ps();
  for (int j0 = 0; j0 < n; j0 += 8) {
    const __m256 d = scales8(vrows + j0, off);
    for (int g = 0; g < G; ++g) {
      const __m256 wg = _mm256_mul_ps(_mm256_load_ps(p[g] + j0), d);
      _mm256_store_ps(w[g] + j0, wg);
      if constexpr (V::kOffset != 0) ws[g] = _mm256_add_ps(ws[g], wg);
    }
  }
  __m256 acc[G][4];
  const int col = blk_col * QK;
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < 4; ++u)
      acc[g][u] = _mm256_mul_ps(_mm256_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u),
                                _mm256_set1_ps(corr[g]));
  const uint8_t* blk = vtile + off;
  for (int j = 0; j < n; ++j, blk += v_row) {
    for (int u = 0; u < 4; ++u) {
      const __m256 x = V::load(blk, u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(&w[g][j]), x, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g) {
    if constexpr (V::kOffset != 0) {
      const __m256 off8 = _mm256_set1_ps(-(float)V::kOffset * hsum256_ps(ws[g]));
      for (int u = 0; u < 4; ++u) acc[g][u] = _mm256_add_ps(acc[g][u], off8);
    }
    for (int u = 0; u < 4; ++u) _mm256_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u, acc[g][u]);
  }
}

// Softmax update and weighted V of G (<= 4) heads for one tile. s: their
// scaled scores [G][kAttnTile], -inf padded; m, l: their running max and
// denominator; part: their partials (acc updated here, m and l at the end).
template <class V, int G>
void tile_heads(float (*s)[kAttnTile], float* m, float* l, const uint8_t* const* vrows, const uint8_t* vtile,
                size_t v_row, int n, int dv, float* part) {
  float corr[G];
  for (int g = 0; g < G; ++g) corr[g] = online_softmax_tile_avx2(s[g], m[g], l[g]);
  for (int b = 0; b < dv / QK; ++b) accumulate_block<V, G>(vrows, vtile, v_row, n, b, dv, s, corr, part);
}

template <class K, class V>
void chunk(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v, nb = dk / QK;
  const size_t k_row = view.k_stride, v_row = view.v_stride;
  const KvSegment& seg = view.segment(c.seg);
  thread_local std::vector<float> qr, dqs, ml;
  thread_local std::vector<int32_t> qoff;
  thread_local std::vector<QBlock> qb;
  thread_local std::vector<BlockQ8A> qa;
  thread_local std::vector<uint8_t> zero_row;
  struct alignas(32) Tile {
    float s[kAttnTile];
  };
  thread_local std::vector<Tile> st;
  qr.assign(q, q + (size_t)n_group * dk);  // [n_group][dk] q, rotated like the rows
  qa.resize((size_t)n_group * nb);         // [n_group][nb] q quantized
  qb.resize((size_t)n_group * nb);         // the same as q and |q| vectors
  dqs.resize((size_t)n_group * nb);        // d_q * scale
  qoff.resize((size_t)n_group * nb);       // K::kOffset * sum(q)
  st.resize(n_group);                      // [n_group][kAttnTile] scaled scores, then probabilities
  ml.resize((size_t)2 * n_group);          // running max [n_group], then denominator [n_group]
  if (zero_row.size() < std::max(k_row, v_row)) zero_row.assign(std::max(k_row, v_row), 0);
  for (int g = 0; g < n_group; ++g) {
    float* qg = &qr[(size_t)g * dk];
    if (view.hadamard_block) hadamard_rotate(qg, dk, view.hadamard_block);
    quantize_act_q8a(qg, &qa[(size_t)g * nb], dk);
    for (int b = 0; b < nb; ++b) {
      const BlockQ8A& a = qa[(size_t)g * nb + b];
      QBlock& o = qb[(size_t)g * nb + b];
      int32_t sum = 0;
      for (int i = 0; i < QK; ++i) {
        o.q[i] = a.qs[i];
        o.u[i] = (uint8_t)std::abs((int)a.qs[i]);
        sum += a.qs[i];
      }
      dqs[(size_t)g * nb + b] = a.d * scale;
      qoff[(size_t)g * nb + b] = K::kOffset * sum;
    }
  }
  float* m = ml.data();
  float* l = m + n_group;
  for (int g = 0; g < n_group; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
    std::fill(part + (size_t)g * (2 + dv) + 2, part + (size_t)(g + 1) * (2 + dv), 0.0f);
  }
  float(*s)[kAttnTile] = &st[0].s;
  // The next tile's rows asked for 8 at a time with the scores, as the f16
  // kernels do (ops/attention_chunk_x86.h); the first tile's before it.
  const RowsAhead ahead{(const char*)seg.k, (const char*)seg.v, k_row, v_row, k_row, v_row, c.r1};
  ahead.k_rows(c.r0, kAttnTile);
  ahead.v_rows(c.r0, kAttnTile);
  for (int32_t r0 = c.r0; r0 < c.r1; r0 += kAttnTile) {
    const int n = std::min<int32_t>(kAttnTile, c.r1 - r0);
    const uint8_t* ktile = (const uint8_t*)seg.k + (size_t)r0 * k_row;
    for (int j0 = 0; j0 < n; j0 += 8) {
      ahead.k_rows(r0 + kAttnTile + j0, 8);
      ahead.v_rows(r0 + kAttnTile + j0, 8);
      const uint8_t* rows[8];
      for (int r = 0; r < 8; ++r) rows[r] = j0 + r < n ? ktile + (size_t)(j0 + r) * k_row : zero_row.data();
      // Up to 4 heads per pass (a fixed split: n_group is a model constant).
      for (int g0 = 0; g0 < n_group; g0 += 4) {
        const size_t o = (size_t)g0 * nb;
        float* sg = s[g0] + j0;
        switch (std::min(4, n_group - g0)) {
          case 1: score8<K, 1>(rows, nb, &qb[o], &dqs[o], &qoff[o], sg, kAttnTile); break;
          case 2: score8<K, 2>(rows, nb, &qb[o], &dqs[o], &qoff[o], sg, kAttnTile); break;
          case 3: score8<K, 3>(rows, nb, &qb[o], &dqs[o], &qoff[o], sg, kAttnTile); break;
          default: score8<K, 4>(rows, nb, &qb[o], &dqs[o], &qoff[o], sg, kAttnTile); break;
        }
      }
    }
    for (int g = 0; g < n_group; ++g)
      for (int j = n; j < kAttnTile; ++j) s[g][j] = -INFINITY;  // exp -> 0
    const uint8_t* vtile = (const uint8_t*)seg.v + (size_t)r0 * v_row;
    const uint8_t* vrows[kAttnTile];
    for (int j = 0; j < kAttnTile; ++j) vrows[j] = j < n ? vtile + (size_t)j * v_row : zero_row.data();
    for (int g0 = 0; g0 < n_group; g0 += 4) {
      float* pg = part + (size_t)g0 * (2 + dv);
      switch (std::min(4, n_group - g0)) {
        case 1: tile_heads<V, 1>(s + g0, m + g0, l + g0, vrows, vtile, v_row, n, dv, pg); break;
        case 2: tile_heads<V, 2>(s + g0, m + g0, l + g0, vrows, vtile, v_row, n, dv, pg); break;
        case 3: tile_heads<V, 3>(s + g0, m + g0, l + g0, vrows, vtile, v_row, n, dv, pg); break;
        default: tile_heads<V, 4>(s + g0, m + g0, l + g0, vrows, vtile, v_row, n, dv, pg); break;
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
  switch (view.storage) {
    case KvStorage::Q8_0: chunk<KQ8, VQ8>(q, n_group, view, c, scale, part); return true;
    case KvStorage::Q4_0: chunk<KQ4, VQ4>(q, n_group, view, c, scale, part); return true;
    default: return false;
  }
}

}  // namespace kvforge
