#pragma once
// The chunk loop of the f16/f32 attention kernels, shared by the AVX2
// (attention_avx2.cpp) and AVX-512 (attention_avx512.cpp) ones: tiles in
// order, the rows prefetched ahead, f16 rows staged as f32 for wide head
// sets; each ISA supplies only the tile of all heads (class Tiles). AVX2
// intrinsics, internal linkage: every including file keeps its own copy,
// built with its own flags (see backend/simd_avx512.h).
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "ops/attention.h"
#include "util/fp16.h"

namespace kvforge {
namespace {

// No std::min / std::vector here: an AVX-512 file's out-of-line copy of a
// shared template could be linked into AVX2 callers (backend/simd_avx512.h).
inline int32_t min32(int32_t a, int32_t b) { return b < a ? b : a; }
inline int32_t max32(int32_t a, int32_t b) { return a < b ? b : a; }

// The cached rows' element types: 8 of them from element i on as f32.
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
// The next tile's rows, asked for by a tile kernel while it works on its
// own (Tiles::kAsksAhead): 8 rows at a time, spread over the tile's work.
// Asked for all at once before the tile (prefetch_rows), the rows of a
// narrow head (64 f16 at the stride of all heads) overrun the core's
// outstanding misses. On the AVX-512 machine, one core, `kvforge bench
// --op-times -n 32 -t 1`, alternating runs: attention per token 5.5-6.8 ->
// 2.8-3.3 ms (SmolLM2, depth 2048), 1.9-2.3 -> 1.2-1.6 ms (GPT-2 shape F16,
// depth 512). Asking a tile further ahead, or row by row, was no better.
struct RowsAhead {
  const char* k;
  const char* v;
  size_t ks, vs;          // bytes from a row to the next
  size_t k_bytes, v_bytes;  // bytes of a row
  int32_t end;            // rows from here on are not asked for
  void k_rows(int32_t r0, int n) const {
    for (int32_t r = r0; r < r0 + n && r < end; ++r)
      for (size_t o = 0; o < k_bytes; o += 64) _mm_prefetch(k + (size_t)r * ks + o, _MM_HINT_T0);
  }
  void v_rows(int32_t r0, int n) const {
    for (int32_t r = r0; r < r0 + n && r < end; ++r)
      for (size_t o = 0; o < v_bytes; o += 64) _mm_prefetch(v + (size_t)r * vs + o, _MM_HINT_T0);
  }
};

// acc[g][u] (U vectors of 8 columns starting at col) += p[g][j] * v_j for the
// tile's rows j < n[g] (vs elements apart): every column is one fma chain
// over the rows in order, started from corr[g] times the head's sum so far
// (in part). Rows below n_all are shared by all heads and run with the
// accumulators in registers; the few after it (multi-token prefill, see
// attend_tokens) continue each head's chains in part, a vector at a time:
// the same fmas in the same order.
// ahead: asks for the next tile's V rows, 8 at a time.
template <class KV, int G, int U>
inline void accumulate_v(const void* vbase, size_t vs, int32_t r0, int n_all, const int* n, int dv, int col,
                         const float (*p)[kAttnTile], const float* corr, float* part, const RowsAhead* ahead) {
  __m256 acc[G][U];
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u)
      acc[g][u] = _mm256_mul_ps(_mm256_loadu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u),
                                _mm256_set1_ps(corr[g]));
  for (int j = 0; j < n_all; ++j) {
    if (ahead && j % 8 == 0) ahead->v_rows(r0 + kAttnTile + j, 8);
    __m256 pj[G];
    for (int g = 0; g < G; ++g) pj[g] = _mm256_set1_ps(p[g][j]);
    const size_t row = (size_t)(r0 + j) * vs + col;
    for (int u = 0; u < U; ++u) {
      const __m256 v = KV::load(vbase, row + 8 * u);
      for (int g = 0; g < G; ++g) acc[g][u] = _mm256_fmadd_ps(pj[g], v, acc[g][u]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < U; ++u) _mm256_storeu_ps(part + (size_t)g * (2 + dv) + 2 + col + 8 * u, acc[g][u]);
  for (int g = 0; g < G; ++g)
    for (int j = n_all; j < n[g]; ++j) {
      const __m256 pj = _mm256_set1_ps(p[g][j]);
      const size_t row = (size_t)(r0 + j) * vs + col;
      for (int u = 0; u < U; ++u) {
        float* a = part + (size_t)g * (2 + dv) + 2 + col + 8 * u;
        _mm256_storeu_ps(a, _mm256_fmadd_ps(pj, KV::load(vbase, row + 8 * u), _mm256_loadu_ps(a)));
      }
    }
}

// The sums of four rows' lane vectors: lane r of the result adds a_r's 8
// lanes as ((0+1)+(2+3))+((4+5)+(6+7)). Every score takes this tree, so its
// bits do not depend on how rows and heads were blocked around it.
inline __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// Whether chunk_heads stages a tile's rows as f32 (its stage_buf).
inline bool stage_uses(int n_heads, RowF16) { return n_heads > 4; }
inline bool stage_uses(int, RowF32) { return false; }

// Asks for rows [r0, r1) (d elements each, stride elements apart) ahead of
// their use: between two decode steps the weights stream through every
// cache, so a sequence's cached rows come back from memory, and the rows of
// a head are too few for the hardware prefetcher to ramp up (it also stops
// at every 4 KiB page: a tile's K or V rows of f16 heads of 64).
template <class KV>
inline void prefetch_rows(const void* base, size_t stride, int d, int32_t r0, int32_t r1) {
  const size_t bytes = (size_t)d * sizeof(typename KV::Elem);
  if (stride == (size_t)d) {  // rows back to back (a cache's own layout): one span, no per-row loop
    const char* p = (const char*)base + (size_t)r0 * bytes;
    for (size_t o = 0; o < (size_t)(r1 - r0) * bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
    return;
  }
  for (int32_t r = r0; r < r1; ++r) {
    const char* row = (const char*)base + (size_t)r * stride * sizeof(typename KV::Elem);
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + o, _MM_HINT_T0);
  }
}

// n_heads query heads over rows [c.r0, r1[h]) of one segment; every r1[h]
// lies in the last tile of [c.r0, max r1), so the heads share all tiles but
// that one's tail. Tiles run in order, all heads per tile, so a tile's rows
// stay in L1 across the passes; with more than 4 heads (prefill's tokens,
// wide groups) f16 rows are converted to f32 once per tile (exactly) and
// every pass reads those. Head h's arithmetic is the same whatever the other
// heads are. part: [n_heads][2 + dv]. Tiles::heads<KV>(q, ng, n_heads, dk,
// dv, kbase, ks, vbase, vs, r0, n, scale, part, ahead) runs one tile of
// every head (the ISA's register-blocked kernel); with Tiles::kAsksAhead it
// asks for the next tile's rows itself (from ahead; nullptr for staged
// rows), else this loop asks before each tile. stage: [kAttnTile][dk + dv]
// floats for the staged rows (used only for f16 rows and more than 4 heads).
template <class Tiles, class KV>
void chunk_heads(const float* const* q, const int32_t* r1, int n_heads, const KvView& view, const AttnChunk& c,
                 float scale, float* part, float* stage_buf) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const size_t ks = view.k_stride / sizeof(typename KV::Elem), vs = view.v_stride / sizeof(typename KV::Elem);
  const KvSegment& seg = view.segment(c.seg);
  attn_partial_init(part, n_heads, dv);
  int32_t c1 = c.r0;
  for (int h = 0; h < n_heads; ++h) c1 = max32(c1, r1[h]);
  const bool stage = stage_uses(n_heads, KV{});
  float* const kt = stage_buf;                         // [kAttnTile][dk]: a tile's K rows in f32
  float* const vt = stage_buf + (size_t)kAttnTile * dk;  // [kAttnTile][dv]: its V rows
  int ng[kAttnMaxHeads];  // [n_heads] rows of the tile each head sees
  constexpr size_t kElem = sizeof(typename KV::Elem);
  const RowsAhead ahead{(const char*)seg.k, (const char*)seg.v, ks * kElem, vs * kElem, dk * kElem, dv * kElem, c1};
  const bool asks = Tiles::kAsksAhead && !stage;
  prefetch_rows<KV>(seg.k, ks, dk, c.r0, min32(c.r0 + kAttnTile, c1));
  if (asks) prefetch_rows<KV>(seg.v, vs, dv, c.r0, min32(c.r0 + kAttnTile, c1));
  for (int32_t r0 = c.r0; r0 < c1; r0 += kAttnTile) {
    const int n = min32(kAttnTile, c1 - r0);
    for (int h = 0; h < n_heads; ++h) ng[h] = max32(0, min32(r1[h] - r0, n));
    if (asks) {
      Tiles::template heads<KV>(q, ng, n_heads, dk, dv, seg.k, ks, seg.v, vs, r0, n, scale, part, &ahead);
      continue;
    }
    prefetch_rows<KV>(seg.v, vs, dv, r0, r0 + n);  // used after the scores
    prefetch_rows<KV>(seg.k, ks, dk, r0 + n, min32(r0 + n + kAttnTile, c1));  // the next tile's
    if (!stage) {
      Tiles::template heads<KV>(q, ng, n_heads, dk, dv, seg.k, ks, seg.v, vs, r0, n, scale, part, nullptr);
      continue;
    }
    for (int j = 0; j < n; ++j) {
      for (int col = 0; col < dk; col += 8)
        _mm256_storeu_ps(&kt[(size_t)j * dk + col], KV::load(seg.k, (size_t)(r0 + j) * ks + col));
      for (int col = 0; col < dv; col += 8)
        _mm256_storeu_ps(&vt[(size_t)j * dv + col], KV::load(seg.v, (size_t)(r0 + j) * vs + col));
    }
    Tiles::template heads<RowF32>(q, ng, n_heads, dk, dv, kt, dk, vt, dv, 0, n, scale, part, nullptr);
  }
}

}  // namespace
}  // namespace kvforge
