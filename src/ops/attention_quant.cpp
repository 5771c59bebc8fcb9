#include "ops/attention_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/attention.h"
#include "ops/hadamard.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

namespace {

GemmFn score_kernel(GgmlType t) {
  GemmFn fn = simd_level() >= SimdLevel::AVX2 ? gemm_kernel_avx2(t) : nullptr;
  if (!fn) fn = gemm_kernel_ref(t);
  if (!fn) fail("attention: no dot kernel for KV storage type {}", type_traits(t).name);
  return fn;
}

}  // namespace

void attend_chunk_quant(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                        float* part) {
  const int dk = view.head_dim_k, dv = view.head_dim_v;
  const GgmlType type = kv_storage_type(view.storage);
  const size_t k_row = view.k_stride, v_row = view.v_stride;
  const size_t qa_row = (size_t)(dk / QK) * sizeof(BlockQ8A);
  const KvSegment& seg = view.segment(c.seg);
  thread_local std::vector<float> qr, vt, sc;
  thread_local std::vector<uint8_t> qa;
  qr.assign(q, q + (size_t)n_group * dk);   // [n_group][dk]  q, rotated like the rows
  qa.resize((size_t)n_group * qa_row);      // [n_group][dk/32] BlockQ8A
  vt.resize((size_t)kAttnTile * dv);        // [tile][dv]     dequantized V rows
  sc.resize((size_t)n_group * kAttnTile);   // [n_group][tile] scores
  for (int g = 0; g < n_group; ++g) {
    float* qg = &qr[(size_t)g * dk];
    if (view.hadamard_block) hadamard_rotate(qg, dk, view.hadamard_block);
    quantize_act_q8a(qg, (BlockQ8A*)&qa[(size_t)g * qa_row], dk);
  }
  const GemmFn dot_tile = score_kernel(type);

  attn_partial_init(part, n_group, dv);
  for (int32_t r0 = c.r0; r0 < c.r1; r0 += kAttnTile) {
    const int32_t n = std::min<int32_t>(kAttnTile, c.r1 - r0);
    // The tile's K rows as an [n][dk] weight matrix; query heads are its tokens.
    const WeightMatrix K{type, n, dk, (const uint8_t*)seg.k + (size_t)r0 * k_row, k_row};
    dot_tile(K, qa.data(), qa_row, 0, n, 0, n_group, sc.data());  // sc[g * n + j]
    for (int32_t j = 0; j < n; ++j)
      dequantize_row(type, (const uint8_t*)seg.v + (size_t)(r0 + j) * v_row, &vt[(size_t)j * dv], dv);
    for (int g = 0; g < n_group; ++g) {
      float* sg = &sc[(size_t)g * n];
      for (int j = 0; j < n; ++j) sg[j] *= scale;
      attn_tile_update(part + (size_t)g * (2 + dv), sg, n, vt.data(), dv);
    }
  }
}

}  // namespace kvforge
