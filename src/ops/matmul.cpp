// matmul: quantize the activations once, then split the (rows x tokens)
// output into tasks for the thread pool. The split only decides who computes
// an output, never how (see matmul_kernels.h), so it may depend on n_tok and
// the thread count without breaking batch invariance.
#include "ops/matmul.h"

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/error.h"

namespace kvforge {

namespace {

GemmFn pick_kernel(const WeightMatrix& W) {
  const bool packed = W.interleave != 0;
  GemmFn fn = nullptr;
  if (simd_level() >= SimdLevel::AVX512) fn = packed ? gemm_kernel_packed_avx512(W.type) : gemm_kernel_avx512(W.type);
  if (!fn && simd_level() >= SimdLevel::AVX2) fn = packed ? gemm_kernel_packed_avx2(W.type) : gemm_kernel_avx2(W.type);
  if (!fn) fn = packed ? gemm_kernel_packed_ref(W.type) : gemm_kernel_ref(W.type);
  if (!fn) throw Error("matmul: unsupported weight type " + std::to_string((int)W.type));
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

// How one matrix's (rows x tokens) output is cut into tasks.
struct Split {
  int64_t rc, n_rc, tb, n_tb;
  int64_t n_tasks() const { return n_rc * n_tb; }
};

// Token blocks of up to 64 keep a block's activations in L2 while a row
// tile's weights sit in L1. Row chunks (multiples of 8, the tile height and
// the packing group) are sized for ~8 tasks per thread (shared among the
// matrices of one call) so that uneven cores balance out.
Split split_for(const WeightMatrix& W, int64_t n_tok, int64_t nth, int n_mats) {
  constexpr int64_t kTokBlock = 64;
  Split s;
  s.n_tb = (n_tok + kTokBlock - 1) / kTokBlock;
  const int64_t want_tasks = nth == 1 ? 1 : std::max<int64_t>(1, nth * 8 / n_mats);
  const int64_t want_row_chunks = std::max<int64_t>(1, want_tasks / s.n_tb);
  s.rc = std::max<int64_t>(16, round_up((W.rows + want_row_chunks - 1) / want_row_chunks, 8));
  s.n_rc = (W.rows + s.rc - 1) / s.rc;
  s.tb = (n_tok + s.n_tb - 1) / s.n_tb;  // even token blocks
  return s;
}

}  // namespace

void matmul_many(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch) {
  if (n_tok <= 0 || n_mats <= 0) return;
  constexpr int kMaxMats = 4;
  bool shared = n_mats <= kMaxMats;
  for (int i = 1; i < n_mats && shared; ++i)
    shared = act_format(Ws[i]->type) == act_format(Ws[0]->type) && Ws[i]->cols == Ws[0]->cols;
  if (!shared) {
    for (int i = 0; i < n_mats; ++i) matmul(*Ws[i], x, n_tok, ys[i], pool, scratch);
    return;
  }
  GemmFn fn[kMaxMats];
  Split sp[kMaxMats];
  int64_t first[kMaxMats + 1] = {0};  // task ranges per matrix
  for (int i = 0; i < n_mats; ++i) {
    fn[i] = pick_kernel(*Ws[i]);
    sp[i] = split_for(*Ws[i], n_tok, pool.size(), n_mats);
    first[i + 1] = first[i] + (Ws[i]->rows > 0 ? sp[i].n_tasks() : 0);
  }
  size_t xs = 0;
  const uint8_t* xa = prepare_activations(*Ws[0], x, n_tok, pool, scratch, &xs);
  pool.parallel_for(first[n_mats], [&](int64_t task, int) {
    int i = 0;
    while (task >= first[i + 1]) ++i;
    const WeightMatrix& W = *Ws[i];
    const Split& s = sp[i];
    const int64_t local = task - first[i];
    const int64_t ri = local / s.n_tb, ti = local % s.n_tb;
    const int64_t r0 = ri * s.rc, r1 = std::min(W.rows, r0 + s.rc);
    const int64_t t0 = ti * s.tb, t1 = std::min(n_tok, t0 + s.tb);
    fn[i](W, xa, xs, r0, r1, t0, t1, ys[i]);
  });
}

void matmul(const WeightMatrix& W, const float* x, int64_t n_tok, float* y, ThreadPool& pool,
            MatmulScratch& scratch) {
  if (n_tok <= 0 || W.rows <= 0) return;
  const WeightMatrix* Ws[1] = {&W};
  float* ys[1] = {y};
  matmul_many(Ws, ys, 1, x, n_tok, pool, scratch);
}

void get_row(const WeightMatrix& W, int64_t r, float* out) {
  if (W.interleave == 0) return dequantize_row(W.type, W.row(r), out, W.cols);
  thread_local std::vector<uint8_t> row;  // [row_stride]
  row.resize(W.row_stride);
  gather_row(W, r, row.data());
  dequantize_row(W.type, row.data(), out, W.cols);
}

}  // namespace kvforge
