#pragma once
// Attention over K/V rows stored in 32-element quantized blocks (Q8_0, Q4_0),
// optionally Hadamard-rotated (ops/hadamard.h). Same contract as attend()
// (ops/attention.h): one query token, one KV-head group, online softmax, tiles
// of kAttnTile rows aligned to each segment start (batch invariance).
//
// Scores: q (rotated when the rows are) is quantized once per call to the
// 8-bit activation blocks and multiplied with a tile of K rows by the same
// GEMM kernels as the weights (ops/matmul_kernels.h, best SIMD level), the
// n_group query heads acting as the kernel's tokens.
// Values: a tile of V rows is dequantized to f32 and accumulated; a rotated
// output is rotated back once at the end.
#include "kv/kv_cache.h"

namespace kvforge {

// q: [n_group][view.head_dim_k] f32, out: [n_group][view.head_dim_v] f32.
void attend_quant(const float* q, int n_group, const KvView& view, float scale, float* out);

}  // namespace kvforge
