#pragma once
// Row quantizers: f32 -> stored weight/KV formats, and f32 -> the 8-bit
// activation blocks that the quantized dot kernels consume.
#include <cstdint>

#include "ops/ggml_types.h"

namespace kvforge {

// Activation block for the 32-element weight formats (Q8_0, Q4_0, Q4_1):
// x[i] ~ d * qs[i], d = amax/127, s = d * sum(qs) (the Q4_1 min term needs
// it). f32 scales: the kernels never convert them.
struct BlockQ8A {
  float d;
  float s;
  int8_t qs[QK];
};
static_assert(sizeof(BlockQ8A) == 40);

// Activation block for the K-quants (256 elements): bsums[j] = sum of
// qs[16j .. 16j+15], used for the K-quant min/offset terms.
struct BlockQ8K {
  float d;
  int16_t bsums[QK_K / 16];
  int8_t qs[QK_K];
};
static_assert(sizeof(BlockQ8K) == 292);

// Can quantize_row() produce this type?
bool quantize_row_supported(GgmlType t);

// Quantizes n floats (n a multiple of the block size) into dst, laid out as
// the type stores them (F32, F16, BF16, Q8_0, Q4_0, Q4_1).
void quantize_row(GgmlType t, const float* src, void* dst, int64_t n);

// Activation quantizers, scalar reference. The SIMD versions produce
// bit-identical blocks (same d, same round-half-even of x * (1/d)), so the
// choice of SIMD level never changes what the dot kernels see.
void quantize_act_q8a_ref(const float* x, BlockQ8A* y, int64_t n);
void quantize_act_q8k_ref(const float* x, BlockQ8K* y, int64_t n);

// Dispatching versions (best SIMD level).
void quantize_act_q8a(const float* x, BlockQ8A* y, int64_t n);
void quantize_act_q8k(const float* x, BlockQ8K* y, int64_t n);

}  // namespace kvforge
