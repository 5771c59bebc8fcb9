#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/hadamard.h"
#include "util/error.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

// Rows [first, first + n) of dim elements, stride bytes apart, as f32 dst: [n][dim].
void load_rows(KvStorage st, const void* base, size_t stride, int32_t first, int32_t n, int dim, float* dst) {
  for (int32_t r = 0; r < n; ++r, dst += dim) {
    const uint8_t* row = (const uint8_t*)base + (size_t)(first + r) * stride;
    if (st == KvStorage::F32) {
      std::copy((const float*)row, (const float*)row + dim, dst);
    } else {
      const fp16_t* s = (const fp16_t*)row;
      for (int i = 0; i < dim; ++i) dst[i] = fp16_to_fp32(s[i]);
    }
  }
}

float dot(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

using ChunkFn = void (*)(const float*, int, const KvView&, const AttnChunk&, float, float*);
using HeadsFn = bool (*)(const float* const*, const int32_t*, int, const KvView&, const AttnChunk&, float, float*);

// The per-head chunk kernel of the best SIMD level that takes the view
// (false: none does). AVX-512 and AVX2 give the same bits.
bool chunk_heads_simd(const float* const* q, const int32_t* r1, int n_heads, const KvView& view, const AttnChunk& c,
                      float scale, float* part) {
  if (simd_level() >= SimdLevel::AVX512 && avx512::attend_chunk_heads_avx512(q, r1, n_heads, view, c, scale, part))
    return true;
  return simd_level() >= SimdLevel::AVX2 && attend_chunk_heads_avx2(q, r1, n_heads, view, c, scale, part);
}

// A group's chunk through a per-head kernel. Groups wider than kAttnMaxHeads
// (DeepSeek-V2/V3's 128 MLA heads) run in slices: each head's arithmetic is
// the same whatever the other heads are.
bool chunk_in_slices(HeadsFn fn, const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                     float* part) {
  const float* qh[kAttnMaxHeads];  // [slice] the group's query heads
  int32_t r1[kAttnMaxHeads];       // [slice] all heads see the whole chunk
  for (int g0 = 0; g0 < n_group; g0 += kAttnMaxHeads) {
    const int ng = std::min(kAttnMaxHeads, n_group - g0);
    for (int g = 0; g < ng; ++g) {
      qh[g] = q + (size_t)(g0 + g) * view.head_dim_k;
      r1[g] = c.r1;
    }
    if (!fn(qh, r1, ng, view, c, scale, part + (size_t)g0 * (2 + view.head_dim_v)))
      return false;  // the view's shape or storage: the same for every slice
  }
  return true;
}

void chunk_best(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float* part) {
  if (kv_storage_quantized(view.storage)) {
    if (simd_level() >= SimdLevel::AVX2 && attend_chunk_quant_avx2(q, n_group, view, c, scale, part)) return;
    return attend_chunk_quant(q, n_group, view, c, scale, part);
  }
  if (chunk_in_slices(chunk_heads_simd, q, n_group, view, c, scale, part)) return;
  attend_chunk_ref(q, n_group, view, c, scale, part);
}

void attend_with(ChunkFn fn, const float* q, int n_group, const KvView& view, float scale, float* out) {
  thread_local std::vector<AttnChunk> chunks;
  thread_local std::vector<float> parts;
  attn_chunks(view, chunks);
  const int n = (int)chunks.size();
  const size_t pf = attn_partial_floats(n_group, view.head_dim_v);
  parts.resize(pf * n);  // [n][n_group][2 + dv]
  for (int i = 0; i < n; ++i) fn(q, n_group, view, chunks[i], scale, &parts[pf * i]);
  attend_merge(parts.data(), n, n_group, view, out);
}

}  // namespace

bool attend_chunk_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                       float* part) {
  return chunk_in_slices(attend_chunk_heads_avx2, q, n_group, view, c, scale, part);
}

void attn_chunks(const KvView& view, std::vector<AttnChunk>& out) {
  out.clear();
  for (int s = 0; s < view.count(); ++s)
    for (int32_t r0 = 0; r0 < view.segment(s).n_rows; r0 += kAttnChunk)
      out.push_back({s, r0, std::min<int32_t>(r0 + kAttnChunk, view.segment(s).n_rows)});
}

namespace {

// The scalar chunk kernel over f16/f32 rows; cap > 0 soft-caps the scaled
// scores (cap * tanh(s / cap)).
void chunk_scalar(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float cap,
                  float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const KvSegment& seg = view.segment(c.seg);
  thread_local std::vector<float> kt, vt, sc;
  kt.resize((size_t)kAttnTile * dk);  // [tile][dk]
  vt.resize((size_t)kAttnTile * dv);  // [tile][dv]
  sc.resize(kAttnTile);               // [tile]
  attn_partial_init(part, n_group, dv);
  for (int32_t r0 = c.r0; r0 < c.r1; r0 += kAttnTile) {
    const int32_t n = std::min<int32_t>(kAttnTile, c.r1 - r0);
    load_rows(view.storage, seg.k, view.k_stride, r0, n, dk, kt.data());
    load_rows(view.storage, seg.v, view.v_stride, r0, n, dv, vt.data());
    for (int g = 0; g < n_group; ++g) {
      const float* qg = q + (size_t)g * dk;
      for (int j = 0; j < n; ++j) sc[j] = dot(qg, &kt[(size_t)j * dk], dk) * scale;
      if (cap > 0)
        for (int j = 0; j < n; ++j) sc[j] = cap * std::tanh(sc[j] / cap);
      attn_tile_update(part + (size_t)g * (2 + dv), sc.data(), n, vt.data(), dv);
    }
  }
}

}  // namespace

void attend_chunk_ref(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                      float* part) {
  if (kv_storage_quantized(view.storage)) return attend_chunk_quant(q, n_group, view, c, scale, part);
  chunk_scalar(q, n_group, view, c, scale, 0, part);
}

void attend_chunk_softcap(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                          float cap, float* part) {
  if (kv_storage_quantized(view.storage)) fail("attention soft-capping needs f16 or f32 KV rows");
  chunk_scalar(q, n_group, view, c, scale, cap, part);
}

void attn_partial_init(float* part, int n_group, int dv) {
  for (int g = 0; g < n_group; ++g) {
    float* pg = part + (size_t)g * (2 + dv);
    pg[0] = -INFINITY;  // running max
    pg[1] = 0;          // running denominator
    std::fill(pg + 2, pg + 2 + dv, 0.0f);
  }
}

void attn_tile_update(float* pg, const float* sc, int n, const float* vt, int dv) {
  float tile_max = -INFINITY;
  for (int j = 0; j < n; ++j) tile_max = std::max(tile_max, sc[j]);
  const float m_new = std::max(pg[0], tile_max);
  const float corr = std::exp(pg[0] - m_new);  // exp(-inf) = 0 on the first tile
  float* a = pg + 2;
  float l = pg[1] * corr;
  for (int d = 0; d < dv; ++d) a[d] *= corr;
  for (int j = 0; j < n; ++j) {
    const float p = std::exp(sc[j] - m_new);
    l += p;
    const float* vj = vt + (size_t)j * dv;
    for (int d = 0; d < dv; ++d) a[d] += p * vj[d];
  }
  pg[1] = l;
  pg[0] = m_new;
}

namespace {

// attend_merge with the chunks' partials pf floats apart.
void merge_strided(const float* parts, size_t pf, int n_chunks, int n_group, const KvView& view, float* out) {
  const int dv = view.head_dim_v;
  for (int g = 0; g < n_group; ++g) {
    float* o = out + (size_t)g * dv;
    float m = -INFINITY;
    for (int i = 0; i < n_chunks; ++i) m = std::max(m, parts[pf * i + (size_t)g * (2 + dv)]);
    float l = 0;
    std::fill(o, o + dv, 0.0f);
    for (int i = 0; i < n_chunks; ++i) {
      const float* pg = parts + pf * i + (size_t)g * (2 + dv);
      const float w = std::exp(pg[0] - m);
      l += pg[1] * w;
      for (int d = 0; d < dv; ++d) o[d] += pg[2 + d] * w;
    }
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int d = 0; d < dv; ++d) o[d] *= inv;
    if (view.hadamard_block) hadamard_rotate(o, dv, view.hadamard_block);  // back from the rotated basis (H = H^-1)
  }
}

// Whether the views differ only in the rows of one tile: the same storage,
// segments and chunk list, but for the last segment's row count, whose last
// row falls in the same tile of the same chunk for every view.
bool share_all_but_last_tile(const KvView* views, int n) {
  const KvView& a = views[0];
  if (a.count() == 0) return false;
  const int last = a.count() - 1;
  auto last_tile = [&](int32_t rows) { return rows <= 0 ? -1 : (rows - 1) / kAttnTile; };
  for (int i = 1; i < n; ++i) {
    const KvView& b = views[i];
    if (b.storage != a.storage || b.hadamard_block != a.hadamard_block || b.head_dim_k != a.head_dim_k ||
        b.head_dim_v != a.head_dim_v || b.v_in_k != a.v_in_k || b.k_stride != a.k_stride || b.v_stride != a.v_stride ||
        b.count() != a.count())
      return false;
    for (int s = 0; s <= last; ++s)
      if (b.segment(s).k != a.segment(s).k || b.segment(s).v != a.segment(s).v ||
          (s < last && b.segment(s).n_rows != a.segment(s).n_rows))
        return false;
    if (last_tile(b.segment(last).n_rows) != last_tile(a.segment(last).n_rows) ||
        last_tile(a.segment(last).n_rows) < 0)
      return false;
  }
  return true;
}

}  // namespace

void attend_merge(const float* parts, int n_chunks, int n_group, const KvView& view, float* out) {
  merge_strided(parts, attn_partial_floats(n_group, view.head_dim_v), n_chunks, n_group, view, out);
}

void attend_tokens(const float* const* qs, const KvView* views, int n_tok, int n_group, float scale,
                   float* const* outs) {
  const bool joint = n_tok > 1 && n_tok <= kAttnMaxTokens && n_tok * n_group <= kAttnMaxHeads &&
                     simd_level() >= SimdLevel::AVX2 && !kv_storage_quantized(views[0].storage) &&
                     views[0].head_dim_k % 8 == 0 && views[0].head_dim_v % 8 == 0 &&
                     share_all_but_last_tile(views, n_tok);
  if (!joint) {
    for (int i = 0; i < n_tok; ++i) attend(qs[i], n_group, views[i], scale, outs[i]);
    return;
  }
  // The longest view's chunks; the heads of the shorter views stop early in
  // the last one.
  int longest = 0;
  for (int i = 1; i < n_tok; ++i)
    if (views[i].n_rows() > views[longest].n_rows()) longest = i;
  const KvView& view = views[longest];
  const int n_heads = n_tok * n_group, dk = view.head_dim_k, dv = view.head_dim_v;
  thread_local std::vector<AttnChunk> chunks;
  thread_local std::vector<float> parts;
  attn_chunks(view, chunks);
  const int n = (int)chunks.size();
  const size_t pf = attn_partial_floats(n_heads, dv);
  parts.resize(pf * n);  // [n][n_tok][n_group][2 + dv]
  const float* qh[kAttnMaxHeads];  // [n_tok * n_group] token-major
  int32_t r1[kAttnMaxHeads];       // [n_tok * n_group] the rows each head sees in a chunk
  for (int i = 0; i < n_tok; ++i)
    for (int g = 0; g < n_group; ++g) qh[i * n_group + g] = qs[i] + (size_t)g * dk;
  const int last_seg = view.count() - 1;
  for (int c = 0; c < n; ++c) {
    const bool last = c == n - 1;
    for (int i = 0; i < n_tok; ++i)
      for (int g = 0; g < n_group; ++g)
        r1[i * n_group + g] = last ? std::min(chunks[c].r1, views[i].segment(last_seg).n_rows) : chunks[c].r1;
    chunk_heads_simd(qh, r1, n_heads, view, chunks[c], scale, &parts[pf * c]);
  }
  const size_t token_floats = attn_partial_floats(n_group, dv);
  for (int i = 0; i < n_tok; ++i) merge_strided(&parts[token_floats * i], pf, n, n_group, views[i], outs[i]);
}

void attend_chunk(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float* part) {
  chunk_best(q, n_group, view, c, scale, part);
}

void attend(const float* q, int n_group, const KvView& view, float scale, float* out) {
  attend_with(chunk_best, q, n_group, view, scale, out);
}

void attend_ref(const float* q, int n_group, const KvView& view, float scale, float* out) {
  attend_with(attend_chunk_ref, q, n_group, view, scale, out);
}

}  // namespace kvforge
