#include "ops/attention_weights.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/hadamard.h"

namespace kvforge {

void attn_weights_add(const float* q, int n_group, const KvView& view, float scale, float cap, float* w) {
  const int dk = view.head_dim_k;
  const int32_t n = view.n_rows();
  if (n == 0) return;
  const GgmlType type = kv_storage_type(view.storage);
  thread_local std::vector<float> qr, k, s;
  qr.assign(q, q + (size_t)n_group * dk);  // [n_group][dk]  rotated like the rows
  k.resize(dk);                            // [dk]  one K row as f32
  s.resize((size_t)n_group * n);           // [n_group][n]  scores
  if (view.hadamard_block)
    for (int g = 0; g < n_group; ++g) hadamard_rotate(&qr[(size_t)g * dk], dk, view.hadamard_block);
  for (int32_t r = 0, i = 0; i < view.count(); ++i) {
    const KvSegment& seg = view.segment(i);
    for (int32_t j = 0; j < seg.n_rows; ++j, ++r) {
      dequantize_row(type, (const uint8_t*)seg.k + (size_t)j * view.k_stride, k.data(), dk);
      for (int g = 0; g < n_group; ++g) {
        const float* qg = &qr[(size_t)g * dk];
        float d = 0;
        for (int e = 0; e < dk; ++e) d += qg[e] * k[e];
        d *= scale;
        s[(size_t)g * n + r] = cap > 0 ? cap * std::tanh(d / cap) : d;
      }
    }
  }
  for (int g = 0; g < n_group; ++g) {
    float* sg = &s[(size_t)g * n];
    const float m = *std::max_element(sg, sg + n);
    float l = 0;
    for (int32_t r = 0; r < n; ++r) l += sg[r] = std::exp(sg[r] - m);
    for (int32_t r = 0; r < n; ++r) w[r] += sg[r] / l;
  }
}

}  // namespace kvforge
