// matmul: quantize the activations once, then split the (rows x tokens)
// output into tasks for the thread pool. The split only decides who computes
// an output, never how (see matmul_kernels.h), so it may depend on n_tok and
// the thread count without breaking batch invariance.
#include "ops/matmul.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/activation.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/error.h"
#include "util/op_timer.h"

namespace kvforge {

namespace {

// A kernel and the activation format it takes.
struct Kernel {
  GemmFn fn;
  ActFormat act;
};

// The one place that decides both: the best kernel for W at this SIMD level,
// with act_format(W.type), except that BF16 weights (packed or plain) on a
// CPU with AVX512_BF16 get a vdpbf16ps kernel and bf16-rounded activations.
// (The AVX-512 packed kernels choose their tiles by each task's token count
// themselves: the same bits for any.)
bool bf16act_cpu() { return simd_level() >= SimdLevel::AVX512 && cpu_features().avx512bf16; }

Kernel pick_kernel(const WeightMatrix& W) {
  const bool packed = W.interleave != 0;
  if (bf16act_cpu())
    if (GemmFn fn = packed ? gemm_kernel_packed_bf16act_avx512bf16(W.type) : gemm_kernel_bf16act_avx512bf16(W.type))
      return {fn, ActFormat::BF16};
  GemmFn fn = nullptr;
  if (simd_level() >= SimdLevel::AVX512) fn = packed ? gemm_kernel_packed_avx512(W.type) : gemm_kernel_avx512(W.type);
  if (!fn && simd_level() >= SimdLevel::AVX2) fn = packed ? gemm_kernel_packed_avx2(W.type) : gemm_kernel_avx2(W.type);
  if (!fn) fn = packed ? gemm_kernel_packed_ref(W.type) : gemm_kernel_ref(W.type);
  if (!fn) throw Error("matmul: unsupported weight type " + type_name((uint32_t)W.type));
  return {fn, act_format(W.type)};
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Bytes of the n_tok activation rows [n_tok][cols] in format fmt (0 for
// f32, which is used in place).
size_t activation_bytes(ActFormat fmt, int64_t cols, int64_t n_tok) {
  return fmt == ActFormat::F32 ? 0 : (size_t)n_tok * act_row_bytes(fmt, cols);
}

// Elements per block of format fmt: parts of a row converted apart start
// and end at multiples of it.
int64_t act_block(ActFormat fmt) { return fmt == ActFormat::Q8A ? QK : fmt == ActFormat::Q8K ? QK_K : 1; }

// Elements [c0, c1) of the token row x into its converted row `row` (c0 a
// multiple of act_block(fmt)); f32 is used in place, nothing to convert.
void convert_act(ActFormat fmt, const float* x, int64_t c0, int64_t c1, uint8_t* row) {
  switch (fmt) {
    case ActFormat::Q8A: return quantize_act_q8a(x + c0, (BlockQ8A*)row + c0 / QK, c1 - c0);
    case ActFormat::Q8K: return quantize_act_q8k(x + c0, (BlockQ8K*)row + c0 / QK_K, c1 - c0);
    case ActFormat::BF16: return quantize_row(GgmlType::BF16, x + c0, (bf16_t*)row + c0, c1 - c0);  // nearest even
    case ActFormat::F32: return;
  }
}

// Converts the n_tok activation rows x [n_tok][cols] into format fmt at q
// (activation_bytes of them; parallel over tokens when there are enough of
// them to pay for a pool hand-off); f32 is used in place.
const uint8_t* prepare_activations(ActFormat fmt, int64_t cols, const float* x, int64_t n_tok, ThreadPool& pool,
                                   uint8_t* q, size_t* stride) {
  if (fmt == ActFormat::F32) {
    *stride = (size_t)cols * sizeof(float);
    return (const uint8_t*)x;
  }
  if (cols % act_block(fmt) != 0) throw Error("matmul: cols not a multiple of the block size");
  *stride = act_row_bytes(fmt, cols);
  const size_t s = *stride;  // q: [n_tok][s]
  auto convert_rows = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) convert_act(fmt, x + t * cols, 0, cols, q + t * s);
  };
  constexpr int64_t kTokChunk = 8;
  if (pool.size() > 1 && n_tok >= 2 * kTokChunk) {
    pool.parallel_for((n_tok + kTokChunk - 1) / kTokChunk, [&](int64_t c, int) {
      convert_rows(c * kTokChunk, std::min(n_tok, (c + 1) * kTokChunk));
    });
  } else {
    convert_rows(0, n_tok);
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
// matrices of one call) so that uneven cores balance out; prefill calls
// (a whole token block) for ~32, in multiples of 32 rows (the F16 tiles'
// blocks of 4 groups, which stream the block's activations once): a job
// ends when its last task does, and with 8 the other thread waited half a
// task per job, a few % of a 2-thread prefill. Calls of a few tokens (a
// batched decode step) cut at multiples of 16 rows: the AVX-512 tiles of
// matmul_x16_avx512.cpp take row groups in pairs, and a chunk of an odd
// number of groups would end in a lone group at the cost of a pair. Single
// tokens and prefill of a packed F16/BF16 matrix cut at its blocks of 64
// rows, which its decode tiles read as one stream each and its prefill tiles
// take whole.
Split split_for(const WeightMatrix& W, int64_t n_tok, int64_t nth, int n_mats) {
  constexpr int64_t kTokBlock = 64;
  Split s;
  s.n_tb = (n_tok + kTokBlock - 1) / kTokBlock;
  const bool prefill = n_tok >= kTokBlock;
  const int64_t per_thread = prefill ? 32 : 8;
  const int64_t want_tasks = nth == 1 ? 1 : std::max<int64_t>(1, nth * per_thread / n_mats);
  const int64_t want_row_chunks = std::max<int64_t>(1, want_tasks / s.n_tb);
  int64_t align = prefill ? 32 : n_tok >= kX16MinTok ? 16 : 8;
  if (W.interleave != 0 && packs_in_blocks16(W.type) && (prefill || n_tok == 1)) align = kRows16;
  s.rc = std::max<int64_t>(16, round_up((W.rows + want_row_chunks - 1) / want_row_chunks, align));
  s.n_rc = (W.rows + s.rc - 1) / s.rc;
  s.tb = (n_tok + s.n_tb - 1) / s.n_tb;  // even token blocks
  return s;
}

// The epilogue over outputs [r0, r1) of tokens [t0, t1) of y ([n_tok][rows]).
void apply_epilogue(const Epilogue& ep, float* y, int64_t rows, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    float* yr = y + t * rows + r0;
    if (ep.bias)
      for (int64_t r = r0; r < r1; ++r) yr[r - r0] += ep.bias[r];
    if (ep.act == Activation::GELU) gelu_inplace(yr, r1 - r0);
  }
}

// n values of T on the stack when n <= N (the 1 to 3 matrices of a decode
// step's matmuls: no heap allocation per call), else on the heap.
template <class T, int N>
class SmallArray {
 public:
  explicit SmallArray(int n) : p_(local_) {
    if (n > N) heap_.resize(n), p_ = heap_.data();
  }
  T& operator[](int i) { return p_[i]; }
  T* data() { return p_; }
  SmallArray(const SmallArray&) = delete;
  SmallArray& operator=(const SmallArray&) = delete;

 private:
  T local_[N]{};
  std::vector<T> heap_;
  T* p_;
};

// fn over rows [r0, r1) and tokens [t0, t1) of W. A packed F16/BF16 matrix
// may end in a partial group (packable(): any row count, the last block
// padded with zero rows), which the kernels never see: its 8 rows are
// computed into a buffer and the valid ones copied out. Every output is the
// same chain in any tile, so this changes no bit.
void run_kernel(GemmFn fn, const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                int64_t t1, float* y) {
  const int64_t r_whole = W.interleave != 0 ? r1 / kPackRows * kPackRows : r1;  // r0 is a group's first row
  if (r_whole > r0) fn(W, xa, xs, r0, r_whole, t0, t1, y);
  if (r_whole == r1) return;
  const WeightMatrix last = packed_group16(W, r_whole);  // the last group as a matrix of its own
  constexpr int64_t kTok = 64;
  float tmp[kTok * kPackRows];  // [kTok][kPackRows]
  for (int64_t t = t0; t < t1; t += kTok) {
    const int64_t n = std::min(kTok, t1 - t);
    fn(last, xa + t * xs, xs, 0, kPackRows, 0, n, tmp);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(y + (t + i) * W.rows + r_whole, tmp + i * kPackRows, (r1 - r_whole) * sizeof(float));
  }
}

bool has_epilogue(const Epilogue* eps, int i) {
  return eps && (eps[i].bias || eps[i].act != Activation::None);
}

// How matmul_impl runs its matrices.
struct Plan {
  const uint8_t* pre = nullptr;  // the input already converted (matmul_prepared), shared by all matrices
  int64_t row_align = 0;         // > 0: rows in step (matmul_rows_then): a task does its rows of every matrix
  detail::RowsFn after = nullptr;
  const void* after_fn = nullptr;
};

// ys[i] = Ws[i] xs[i] for all i in one pool hand-off. Matrices that read the
// same input in the same format share its converted activations.
void matmul_impl(const WeightMatrix* const* Ws, const float* const* xs, float* const* ys, int n_mats,
                 int64_t n_tok, ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps, const Plan& plan = {}) {
  if (n_tok <= 0 || n_mats <= 0) return;
  struct Mat {
    Kernel k;
    Split sp;
    int64_t first = 0;  // its first task
    int act_of = 0;     // the matrix whose activations it reads
    size_t act_at = 0;  // their offset in scratch.qx
  };
  SmallArray<Mat, 4> ms(n_mats);
  int64_t n_tasks = 0;
  size_t act_bytes = 0;
  for (int i = 0; i < n_mats; ++i) {
    Mat& m = ms[i];
    m.k = pick_kernel(*Ws[i]);
    if (plan.row_align > 0) {  // one split for all: that of a single matrix, rows cut at row_align
      m.sp = split_for(*Ws[0], n_tok, pool.size(), 1);
      m.sp.rc = round_up(m.sp.rc, std::lcm<int64_t>(8, plan.row_align));
      m.sp.n_rc = (Ws[0]->rows + m.sp.rc - 1) / m.sp.rc;
      if (i == 0) n_tasks = Ws[0]->rows > 0 ? m.sp.n_tasks() : 0;
    } else {
      m.sp = split_for(*Ws[i], n_tok, pool.size(), n_mats);
      m.first = n_tasks;
      n_tasks += Ws[i]->rows > 0 ? m.sp.n_tasks() : 0;
    }
    m.act_of = i;
    for (int j = 0; j < i; ++j)
      if (xs[j] == xs[i] && ms[j].k.act == m.k.act && Ws[j]->cols == Ws[i]->cols) {
        m.act_of = j;
        break;
      }
    if (plan.pre && m.act_of != 0)
      throw Error("matmul_prepared: the matrices take different input forms");
    if (m.act_of == i && !plan.pre) {
      m.act_at = act_bytes;
      act_bytes += activation_bytes(m.k.act, Ws[i]->cols, n_tok);
    }
  }
  if (scratch.qx.size() < act_bytes) scratch.qx.resize(act_bytes);
  SmallArray<const uint8_t*, 4> xa(n_mats);
  SmallArray<size_t, 4> xstride(n_mats);
  if (plan.pre) {
    const size_t rb = act_row_bytes(ms[0].k.act, Ws[0]->cols);
    for (int i = 0; i < n_mats; ++i) xa[i] = plan.pre, xstride[i] = rb ? rb : (size_t)Ws[0]->cols * sizeof(float);
  } else {
    OpScope timed(scratch.timer, Op::Quantize);
    for (int i = 0; i < n_mats; ++i) {
      const int j = ms[i].act_of;
      if (j == i)
        xa[i] = prepare_activations(ms[i].k.act, Ws[i]->cols, xs[i], n_tok, pool, scratch.qx.data() + ms[i].act_at,
                                    &xstride[i]);
      else
        xa[i] = xa[j], xstride[i] = xstride[j];
    }
  }
  auto run = [&](int i, int64_t local, int64_t* r0, int64_t* r1, int64_t* t0, int64_t* t1) {
    const WeightMatrix& W = *Ws[i];
    const Split& s = ms[i].sp;
    const int64_t ri = local / s.n_tb, ti = local % s.n_tb;
    *r0 = ri * s.rc, *r1 = std::min(W.rows, *r0 + s.rc);
    *t0 = ti * s.tb, *t1 = std::min(n_tok, *t0 + s.tb);
    run_kernel(ms[i].k.fn, W, xa[i], xstride[i], *r0, *r1, *t0, *t1, ys[i]);
    if (has_epilogue(eps, i)) apply_epilogue(eps[i], ys[i], W.rows, *r0, *r1, *t0, *t1);
  };
  if (plan.row_align > 0) {
    pool.parallel_for(n_tasks, [&](int64_t task, int) {
      int64_t r0 = 0, r1 = 0, t0 = 0, t1 = 0;
      for (int i = 0; i < n_mats; ++i) run(i, task, &r0, &r1, &t0, &t1);
      plan.after(plan.after_fn, r0, r1, t0, t1);
    });
    return;
  }
  pool.parallel_for(n_tasks, [&](int64_t task, int) {
    int i = 0;
    while (i + 1 < n_mats && task >= ms[i + 1].first) ++i;
    int64_t r0, r1, t0, t1;
    run(i, task - ms[i].first, &r0, &r1, &t0, &t1);
  });
}

}  // namespace

void matmul_many(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps) {
  SmallArray<const float*, 4> xs(n_mats);
  for (int i = 0; i < n_mats; ++i) xs[i] = x;
  matmul_impl(Ws, xs.data(), ys, n_mats, n_tok, pool, scratch, eps);
}

void matmul_prepared(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const uint8_t* xa,
                     int64_t n_tok, ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps) {
  SmallArray<const float*, 4> xs(n_mats);
  for (int i = 0; i < n_mats; ++i) xs[i] = (const float*)xa;
  Plan plan;
  plan.pre = xa;
  matmul_impl(Ws, xs.data(), ys, n_mats, n_tok, pool, scratch, eps, plan);
}

void detail::matmul_rows_then(const WeightMatrix* const* Ws, float* const* ys, int n_mats, const float* x,
                              int64_t n_tok, ThreadPool& pool, MatmulScratch& scratch, const Epilogue* eps,
                              int64_t row_align, RowsFn after, const void* fn) {
  for (int i = 1; i < n_mats; ++i)
    if (Ws[i]->rows != Ws[0]->rows) throw Error("matmul_rows_then: matrices of different row counts");
  SmallArray<const float*, 4> xs(n_mats);
  for (int i = 0; i < n_mats; ++i) xs[i] = x;
  Plan plan;
  plan.row_align = std::max<int64_t>(row_align, 1);
  plan.after = after;
  plan.after_fn = fn;
  matmul_impl(Ws, xs.data(), ys, n_mats, n_tok, pool, scratch, eps, plan);
}

ActForm::ActForm(const WeightMatrix& W) {
  const ActFormat f = pick_kernel(W).act;
  fmt_ = (int)f;
  cols_ = W.cols;
  block_ = act_block(f);
  row_bytes_ = f == ActFormat::F32 ? 0 : act_row_bytes(f, W.cols);
}

void ActForm::convert(const float* x, int64_t c0, int64_t c1, uint8_t* row) const {
  convert_act((ActFormat)fmt_, x, c0, c1, row);
}

void matmul_each(const WeightMatrix* const* Ws, const float* const* xs, float* const* ys, int n_mats, int64_t n_tok,
                 ThreadPool& pool, MatmulScratch& scratch) {
  matmul_impl(Ws, xs, ys, n_mats, n_tok, pool, scratch, nullptr);
}

void matmul(const WeightMatrix& W, const float* x, int64_t n_tok, float* y, ThreadPool& pool,
            MatmulScratch& scratch, Epilogue ep) {
  if (n_tok <= 0 || W.rows <= 0) return;
  const WeightMatrix* Ws[1] = {&W};
  float* ys[1] = {y};
  matmul_many(Ws, ys, 1, x, n_tok, pool, scratch, &ep);
}

WeightMatrix row_block(const WeightMatrix& W, int64_t r0, int64_t n) {
  if (W.interleave != 0 || r0 < 0 || n < 0 || r0 + n > W.rows) throw Error("row_block: rows out of range");
  WeightMatrix b = W;
  b.rows = n;
  b.data = W.row(r0);
  return b;
}

void get_row(const WeightMatrix& W, int64_t r, float* out) {
  if (W.interleave == 0) return dequantize_row(W.type, W.row(r), out, W.cols);
  thread_local std::vector<uint8_t> row;  // [row_stride]
  row.resize(W.row_stride);
  gather_row(W, r, row.data());
  dequantize_row(W.type, row.data(), out, W.cols);
}

}  // namespace kvforge
