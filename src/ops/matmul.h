#pragma once
// Matrix products of stored weights with f32 activations.
#include <cstdint>
#include <vector>

#include "ops/ggml_types.h"

namespace kvforge {

class ThreadPool;
struct OpTimer;

// A weight matrix [rows][cols] as stored in the model file (row-major, each
// row row_stride bytes of `type`).
struct WeightMatrix {
  GgmlType type = GgmlType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  size_t row_stride = 0;  // bytes of one row in the plain layout
  // 0: plain rows. kPackRows (ops/weight_pack.h): groups of rows interleaved
  // block by block; row() is then meaningless (use gather_row / get_row).
  int interleave = 0;

  const uint8_t* row(int64_t r) const { return (const uint8_t*)data + r * row_stride; }
};

// Rows [r0, r0 + n) of a plain-layout matrix, as a matrix of its own (the
// parts of a fused projection).
WeightMatrix row_block(const WeightMatrix& W, int64_t r0, int64_t n);

// Reused buffers for activations quantized to 8 bits (grows, never shrinks).
struct MatmulScratch {
  std::vector<uint8_t> qx;
  OpTimer* timer = nullptr;  // non-null: the conversion is timed as Op::Quantize (util/op_timer.h)
};

// Applied to each block of outputs right after its product, in the same
// task (while the block is in cache): y = act(W x + bias). Element-wise, so
// the result does not depend on how the outputs are split.
enum class Activation { None, GELU };
struct Epilogue {
  const float* bias = nullptr;  // [rows], or null
  Activation act = Activation::None;
};

// y[t][r] = sum_k W[r][k] * x[t][k] for t in [0, n_tok).
// x: [n_tok][cols] f32, y: [n_tok][rows] f32.
// Batch-invariant by contract: y[t][r] is bit-identical whatever n_tok is,
// however rows/tokens are split across threads and tiles; only the chosen
// SIMD level (and, at AVX512, whether the CPU has AVX512_BF16) may change it.
// Quantized weights are multiplied with the activations quantized once per
// call to 8-bit blocks (per token row); BF16 weights on an AVX512_BF16 CPU
// with the activations rounded once per call to bf16.
void matmul(const WeightMatrix& W, const float* x, int64_t n_tok, float* y, ThreadPool& pool,
            MatmulScratch& scratch, Epilogue ep = {});

// Several matrices applied to the same input in one pool hand-off (Q, K and
// V; gate and up): ys[i] = Ws[i] x, each y[t][r] exactly as matmul() gives it.
// The activations are quantized once when all matrices take the same format.
// eps: one epilogue per matrix, or null for none.
void matmul_many(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps = nullptr);

// Several matrices, each applied to its own input, in one pool hand-off (the
// per-head projections of latent attention): ys[i] = Ws[i] xs[i], xs[i]:
// [n_tok][Ws[i]->cols], each y[t][r] exactly as matmul() gives it.
void matmul_each(const WeightMatrix* const* Ws, const float* const* xs, float* const* ys, int n_mats, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch);

// Whether the loader should repack W into its interleaved layout
// (ops/weight_pack.h): every packable matrix, except BF16 ones on a CPU
// with AVX512_BF16, whose vdpbf16ps kernel (the fastest there) reads plain rows.
bool worth_packing(const WeightMatrix& W);

// Dequantizes row r of W into out[cols] (embedding lookup).
void get_row(const WeightMatrix& W, int64_t r, float* out);

}  // namespace kvforge
