#include "ops/attention_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/hadamard.h"
#include "util/fp16.h"

namespace kvforge {

namespace {

constexpr int kRows = 8;  // rows scored together: independent sums the compiler vectorizes

// f16 -> f32 of every half, from the exact scalar conversion (a lookup is
// several times faster than its branches; the values are the same).
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);  // [65536]
    for (uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_fp32((fp16_t)h);
    return t;
  }();
  return table.data();
}

// Rows [n][dk] as f32, transposed into kt [dk][kRows] (columns >= n unused).
void load_rows(GgmlType type, const uint8_t* k, size_t stride, int n, int dk, float* row, float* kt) {
  const float* f16 = type == GgmlType::F16 ? f16_table() : nullptr;
  for (int j = 0; j < n; ++j) {
    const uint8_t* src = k + (size_t)j * stride;
    if (f16) {
      for (int e = 0; e < dk; ++e) {
        fp16_t h;
        std::memcpy(&h, src + 2 * e, 2);
        kt[(size_t)e * kRows + j] = f16[h];
      }
    } else {
      dequantize_row(type, src, row, dk);
      for (int e = 0; e < dk; ++e) kt[(size_t)e * kRows + j] = row[e];
    }
  }
}

}  // namespace

void attn_weights_add(const float* q, int n_group, const KvView& view, float scale, float cap, float* w) {
  const int dk = view.head_dim_k;
  const int32_t n = view.n_rows();
  if (n == 0) return;
  const GgmlType type = kv_storage_type(view.storage);
  thread_local std::vector<float> qr, row, kt, s;
  qr.assign(q, q + (size_t)n_group * dk);  // [n_group][dk]  rotated like the rows
  row.resize(dk);                          // [dk]  one K row as f32
  kt.resize((size_t)dk * kRows);           // [dk][kRows]  kRows K rows, transposed
  s.resize((size_t)n_group * n);           // [n_group][n]  scores
  if (view.hadamard_block)
    for (int g = 0; g < n_group; ++g) hadamard_rotate(&qr[(size_t)g * dk], dk, view.hadamard_block);
  for (int32_t r = 0, i = 0; i < view.count(); ++i) {
    const KvSegment& seg = view.segment(i);
    for (int32_t j0 = 0; j0 < seg.n_rows; j0 += kRows) {
      const int nj = std::min<int32_t>(kRows, seg.n_rows - j0);
      load_rows(type, (const uint8_t*)seg.k + (size_t)j0 * view.k_stride, view.k_stride, nj, dk, row.data(), kt.data());
      for (int g = 0; g < n_group; ++g) {
        const float* qg = &qr[(size_t)g * dk];
        // Each row's dot product adds its terms in order e = 0, 1, ...: the
        // same sum, bit for bit, as one row at a time.
        float d[kRows] = {};
        for (int e = 0; e < dk; ++e)
          for (int j = 0; j < kRows; ++j) d[j] += qg[e] * kt[(size_t)e * kRows + j];
        for (int j = 0; j < nj; ++j) {
          const float x = d[j] * scale;
          s[(size_t)g * n + r + j] = cap > 0 ? cap * std::tanh(x / cap) : x;
        }
      }
      r += nj;
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
