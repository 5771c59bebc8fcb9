#pragma once
// Matrix products of stored weights with f32 activations.
#include <cstdint>
#include <type_traits>
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
  // 0: plain rows. kPackRows (ops/weight_pack.h): groups of 8 rows
  // interleaved block by block (F16/BF16: blocks of 64 rows interleaved
  // column by column); row() is then meaningless (use gather_row / get_row).
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

// The form in which W's kernel reads its input: 8-bit blocks, bf16, or f32
// as it is. The op that produces a matmul's input can convert each row in
// its own pass, while the row is in cache, and hand the converted rows to
// matmul_prepared: one pass over the activations fewer than matmul(), which
// converts them itself. The bytes are exactly those matmul() makes.
class ActForm {
 public:
  ActForm() = default;
  explicit ActForm(const WeightMatrix& W);  // the form of W's input
  int64_t cols() const { return cols_; }
  // Parts of a row converted apart start and end at multiples of block().
  int64_t block() const { return block_; }
  // Bytes of one converted token row; 0: the kernel reads f32, nothing to convert.
  size_t row_bytes() const { return row_bytes_; }
  // Elements [c0, c1) of the token row x ([cols]) into the converted row
  // `row` ([row_bytes]); c0, c1 multiples of block() (c1 = cols allowed).
  void convert(const float* x, int64_t c0, int64_t c1, uint8_t* row) const;
  bool operator==(const ActForm&) const = default;

 private:
  int fmt_ = 0;  // ActFormat (ops/matmul_kernels.h)
  int64_t cols_ = 0, block_ = 1;
  size_t row_bytes_ = 0;
};

// matmul_many of matrices that take the same ActForm, with their input
// already converted: xa [n_tok][form.row_bytes()] (x itself, [n_tok][cols]
// f32, when row_bytes() is 0). Each y[t][r] exactly as matmul() gives it.
void matmul_prepared(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const uint8_t* xa,
                     int64_t n_tok, ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps = nullptr);

// ys[i] = Ws[i] x for matrices of the same shape (gate and up) in one pool
// hand-off, the task that computes rows [r0, r1) of every matrix for tokens
// [t0, t1) then calling after(r0, r1, t0, t1) while those outputs are in
// cache (the GLU product and its conversion for the down projection: no pass
// of their own). r0 is a multiple of row_align (a multiple of 8), r1 too or
// the row count. Each y[t][r] exactly as matmul() gives it.
template <class F>
void matmul_rows_then(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                      ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps, int64_t row_align, F&& after);

// Several matrices, each applied to its own input, in one pool hand-off (the
// per-head projections of latent attention): ys[i] = Ws[i] xs[i], xs[i]:
// [n_tok][Ws[i]->cols], each y[t][r] exactly as matmul() gives it.
void matmul_each(const WeightMatrix* const* Ws, const float* const* xs, float* const* ys, int n_mats, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch);

namespace detail {
using RowsFn = void (*)(const void* fn, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void matmul_rows_then(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                      ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps, int64_t row_align,
                      RowsFn after, const void* fn);
}  // namespace detail

template <class F>
void matmul_rows_then(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                      ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps, int64_t row_align, F&& after) {
  using Fn = std::remove_reference_t<F>;
  detail::matmul_rows_then(
      Ws, ys, n_mats, x, n_tok, pool, scratch, eps, row_align,
      [](const void* f, int64_t r0, int64_t r1, int64_t t0, int64_t t1) { (*(Fn*)f)(r0, r1, t0, t1); },
      (const void*)&after);
}

// Dequantizes row r of W into out[cols] (embedding lookup).
void get_row(const WeightMatrix& W, int64_t r, float* out);

}  // namespace kvforge
