#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention_quant.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

void load_rows(KvStorage st, const void* base, int32_t first, int32_t n, int dim, float* dst) {
  if (st == KvStorage::F32) {
    const float* s = (const float*)base + (size_t)first * dim;
    std::copy(s, s + (size_t)n * dim, dst);
  } else {
    const fp16_t* s = (const fp16_t*)base + (size_t)first * dim;
    for (size_t i = 0; i < (size_t)n * dim; ++i) dst[i] = fp16_to_fp32(s[i]);
  }
}

float dot(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void attend(const float* q, int n_group, const KvView& view, float scale, float* out) {
  if (kv_storage_quantized(view.storage)) return attend_quant(q, n_group, view, scale, out);  // q8/q4 rows
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  thread_local std::vector<float> kt, vt, sc, acc, mx, sum;
  kt.resize((size_t)kAttnTile * dk);   // [tile][dk]
  vt.resize((size_t)kAttnTile * dv);   // [tile][dv]
  sc.resize(kAttnTile);                // [tile]
  acc.assign((size_t)n_group * dv, 0.0f);  // [n_group][dv]
  mx.assign(n_group, -INFINITY);       // running max per head
  sum.assign(n_group, 0.0f);           // running softmax denominator per head

  // Tiles never straddle segments: a segment boundary restarts tiling,
  // which depends only on the view, not on the batch.
  for (int s = 0; s < view.n_segments; ++s) {
    const KvSegment& seg = view.segments[s];
    for (int32_t r0 = 0; r0 < seg.n_rows; r0 += kAttnTile) {
      const int32_t n = std::min<int32_t>(kAttnTile, seg.n_rows - r0);
      load_rows(view.storage, seg.k, r0, n, dk, kt.data());
      load_rows(view.storage, seg.v, r0, n, dv, vt.data());
      for (int g = 0; g < n_group; ++g) {
        const float* qg = q + (size_t)g * dk;
        float tile_max = -INFINITY;
        for (int j = 0; j < n; ++j) {
          sc[j] = dot(qg, &kt[(size_t)j * dk], dk) * scale;
          tile_max = std::max(tile_max, sc[j]);
        }
        const float m_new = std::max(mx[g], tile_max);
        const float corr = std::exp(mx[g] - m_new);  // exp(-inf) = 0 on the first tile
        float* a = &acc[(size_t)g * dv];
        float l = sum[g] * corr;
        for (int d = 0; d < dv; ++d) a[d] *= corr;
        for (int j = 0; j < n; ++j) {
          const float p = std::exp(sc[j] - m_new);
          l += p;
          const float* vj = &vt[(size_t)j * dv];
          for (int d = 0; d < dv; ++d) a[d] += p * vj[d];
        }
        sum[g] = l;
        mx[g] = m_new;
      }
    }
  }
  for (int g = 0; g < n_group; ++g) {
    const float inv = sum[g] > 0 ? 1.0f / sum[g] : 0.0f;
    for (int d = 0; d < dv; ++d) out[(size_t)g * dv + d] = acc[(size_t)g * dv + d] * inv;
  }
}

}  // namespace kvforge
