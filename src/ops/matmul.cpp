// matmul: quantize the activations once, then split the (rows x tokens)
// output into tasks for the thread pool. The split only decides who computes
// an output, never how (see matmul_kernels.h), so it may depend on n_tok and
// the thread count without breaking batch invariance.
#include "ops/matmul.h"

#include <algorithm>
#include <string>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

namespace {

GemmFn pick_kernel(GgmlType t) {
  GemmFn fn = nullptr;
  if (simd_level() >= SimdLevel::AVX2) fn = gemm_kernel_avx2(t);
  if (!fn) fn = gemm_kernel_ref(t);
  if (!fn) throw Error("matmul: unsupported weight type " + std::to_string((int)t));
  return fn;
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Quantizes the n_tok activation rows into scratch (parallel over tokens
// when there are enough of them to pay for a pool hand-off).
const uint8_t* prepare_activations(const WeightMatrix& W, const float* x, int64_t n_tok, ThreadPool& pool,
                                   MatmulScratch& scratch, size_t* stride) {
  const ActFormat fmt = act_format(W.type);
  if (fmt == ActFormat::F32) {
    *stride = (size_t)W.cols * sizeof(float);
    return (const uint8_t*)x;
  }
  const int block = fmt == ActFormat::Q8A ? QK : QK_K;
  if (W.cols % block != 0) throw Error("matmul: cols not a multiple of the block size");
  *stride = act_row_bytes(W.type, W.cols);
  if (scratch.qx.size() < (size_t)n_tok * *stride) scratch.qx.resize((size_t)n_tok * *stride);
  uint8_t* q = scratch.qx.data();
  const size_t s = *stride;
  auto quant_rows = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (fmt == ActFormat::Q8A) quantize_act_q8a(x + t * W.cols, (BlockQ8A*)(q + t * s), W.cols);
      else quantize_act_q8k(x + t * W.cols, (BlockQ8K*)(q + t * s), W.cols);
    }
  };
  constexpr int64_t kTokChunk = 8;
  if (pool.size() > 1 && n_tok >= 2 * kTokChunk) {
    pool.parallel_for((n_tok + kTokChunk - 1) / kTokChunk, [&](int64_t c, int) {
      quant_rows(c * kTokChunk, std::min(n_tok, (c + 1) * kTokChunk));
    });
  } else {
    quant_rows(0, n_tok);
  }
  return q;
}

}  // namespace

void matmul(const WeightMatrix& W, const float* x, int64_t n_tok, float* y, ThreadPool& pool,
            MatmulScratch& scratch) {
  if (n_tok <= 0 || W.rows <= 0) return;
  const GemmFn fn = pick_kernel(W.type);
  size_t xs = 0;
  const uint8_t* xa = prepare_activations(W, x, n_tok, pool, scratch, &xs);

  // Token blocks of up to 64 keep a block's activations in L2 while a 4-row
  // weight tile sits in L1. Row chunks (multiples of 4, the tile height) are
  // sized for ~8 tasks per thread so that uneven cores balance out.
  constexpr int64_t kTokBlock = 64;
  const int64_t nth = pool.size();
  const int64_t n_tb = (n_tok + kTokBlock - 1) / kTokBlock;
  const int64_t want_tasks = nth == 1 ? 1 : nth * 8;
  const int64_t want_row_chunks = std::max<int64_t>(1, want_tasks / n_tb);
  const int64_t rc = std::max<int64_t>(16, round_up((W.rows + want_row_chunks - 1) / want_row_chunks, 4));
  const int64_t n_rc = (W.rows + rc - 1) / rc;
  const int64_t tb = (n_tok + n_tb - 1) / n_tb;  // even token blocks
  pool.parallel_for(n_rc * n_tb, [&](int64_t task, int) {
    const int64_t ri = task / n_tb, ti = task % n_tb;
    const int64_t r0 = ri * rc, r1 = std::min(W.rows, r0 + rc);
    const int64_t t0 = ti * tb, t1 = std::min(n_tok, t0 + tb);
    fn(W, xa, xs, r0, r1, t0, t1, y);
  });
}

void get_row(const WeightMatrix& W, int64_t r, float* out) { dequantize_row(W.type, W.row(r), out, W.cols); }

}  // namespace kvforge
