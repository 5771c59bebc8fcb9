#pragma once
// Element-wise activations and helpers used by the feed-forward blocks.
#include <cstdint>

namespace kvforge {

// gate[i] = silu(gate[i]) * up[i]   (SwiGLU)
// (best SIMD level; element-wise, so batch-invariant at any level)
void swiglu_inplace(float* gate, const float* up, int64_t n);
void swiglu_inplace_ref(float* gate, const float* up, int64_t n);  // scalar reference
// x[i] = gelu(x[i]) with the tanh approximation (GPT-2's "gelu_new"):
// 0.5 v (1 + tanh(u)), u = sqrt(2/pi) (v + 0.044715 v^3). The AVX2 version
// uses the identity 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)) with the vector exp.
void gelu_inplace(float* x, int64_t n);
void gelu_inplace_ref(float* x, int64_t n);  // scalar reference (libm tanh)
// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);
// y[i] *= x[i]   (the gated product of GeGLU)
void mul_inplace(float* y, const float* x, int64_t n);

}  // namespace kvforge
