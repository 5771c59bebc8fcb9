#pragma once
// Attention over K/V rows stored in 32-element quantized blocks (Q8_0, Q4_0),
// optionally Hadamard-rotated (ops/hadamard.h): the chunk kernel that
// attend()/attend_chunk() (ops/attention.h) pick for quantized views. Same
// contract as the other chunk kernels: one query token, one KV-head group,
// online softmax over tiles of kAttnTile rows, a partial result per chunk;
// the merge rotates a rotated output back.
//
// Scores: q (rotated when the rows are) is quantized once per call to the
// 8-bit activation blocks and multiplied with a tile of K rows by the same
// GEMM kernels as the weights (ops/matmul_kernels.h, best SIMD level), the
// n_group query heads acting as the kernel's tokens (scalar reference; the
// AVX2 kernel has its own loop over the same integer dots, see
// attention_quant_avx2.cpp).
// Values: a tile of V rows is dequantized to f32 and accumulated in the
// rotated basis (scalar reference); the AVX2 kernel
// (attention_quant_avx2.cpp) widens each V block in registers and folds its
// scale into the softmax weight instead.
//
// Declared in ops/attention.h:
//   void attend_chunk_quant(const float* q, int n_group, const KvView& view,
//                           const AttnChunk& c, float scale, float* part);
//   bool attend_chunk_quant_avx2(...);  // same arguments
#include "ops/attention.h"
