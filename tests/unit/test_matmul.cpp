// Matmul kernels: SIMD vs scalar reference, quantized vs f32, and the
// batch-invariance contract (bit-identical rows whatever n_tok / threads).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/activation.h"
#include "ops/matmul.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"
#include "test_matrix.h"
#include "simd_levels.h"

using namespace kvforge;

namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,   GgmlType::Q4_0,
                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q2_K,
                           GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,   GgmlType::IQ4_XS};

bool is_quant(GgmlType t) { return act_format(t) != ActFormat::F32; }
int block_of(GgmlType t) { return act_format(t) == ActFormat::Q8K ? QK_K : is_quant(t) ? QK : 1; }

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = nd(rng);
  // A few outliers, as real activations have.
  for (size_t i = 0; i < n; i += 97) v[i] *= 8.0f;
  return v;
}

using test::make_matrix;

// BF16 weights on a CPU with AVX512_BF16 multiply activations rounded once to
// bf16 (vdpbf16ps); every other float kernel sees the f32 activations.
bool bf16_rounds_acts(GgmlType t, SimdLevel lvl) {
  return t == GgmlType::BF16 && lvl >= SimdLevel::AVX512 && cpu_features().avx512bf16;
}

// The activations the kernels actually see at level lvl, dequantized back to f32.
std::vector<float> seen_activations(GgmlType t, const std::vector<float>& x, int64_t n_tok, int64_t cols,
                                    SimdLevel lvl = SimdLevel::AVX2) {
  if (bf16_rounds_acts(t, lvl)) {
    std::vector<bf16_t> b(x.size());
    quantize_row(GgmlType::BF16, x.data(), b.data(), (int64_t)x.size());  // nearest even, as the kernel
    std::vector<float> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_fp32(b[i]);
    return out;
  }
  if (!is_quant(t)) return x;
  std::vector<float> out(x.size());
  for (int64_t tk = 0; tk < n_tok; ++tk) {
    const float* xr = x.data() + tk * cols;
    float* o = out.data() + tk * cols;
    if (act_format(t) == ActFormat::Q8A) {
      std::vector<BlockQ8A> b(cols / QK);
      quantize_act_q8a_ref(xr, b.data(), cols);
      for (int64_t i = 0; i < cols; ++i) o[i] = b[i / QK].d * b[i / QK].qs[i % QK];
    } else {
      std::vector<BlockQ8K> b(cols / QK_K);
      quantize_act_q8k_ref(xr, b.data(), cols);
      for (int64_t i = 0; i < cols; ++i) o[i] = b[i / QK_K].d * b[i / QK_K].qs[i % QK_K];
    }
  }
  return out;
}

std::vector<float> run(const WeightMatrix& W, const float* x, int64_t n_tok, int threads, SimdLevel lvl,
                       Epilogue ep = {}) {
  ScopedSimdLevel at(lvl);
  ThreadPool pool(threads);
  MatmulScratch scratch;
  std::vector<float> y(n_tok * W.rows, std::numeric_limits<float>::quiet_NaN());
  matmul(W, x, n_tok, y.data(), pool, scratch, ep);
  return y;
}

// Bound scale for one output: sum over k of |w_k| |a_k|, where for quantized
// blocks |w_k| is replaced by 2 max|w| of its block (the integer part d*q of
// a Q4_1 weight is w - m, at most 2 max|w|; its min term m*s is at most
// max|w| sum|a|).
double abs_dot_bound(GgmlType t, const float* w, const float* a, int64_t cols) {
  double s = 0;
  const int bs = block_of(t);
  for (int64_t b = 0; b < cols; b += bs) {
    double wmax = 0;
    for (int i = 0; i < bs; ++i) wmax = std::max(wmax, (double)std::fabs(w[b + i]));
    for (int i = 0; i < bs; ++i) s += (bs == 1 ? std::fabs(w[b + i]) : 2 * wmax) * std::fabs(a[b + i]);
  }
  return s;
}

bool simd_available() { return cpu_features().avx2 && cpu_features().fma && cpu_features().f16c; }

}  // namespace

TEST(ActQuant, SimdMatchesReferenceBitForBit) {
  if (!simd_available()) GTEST_SKIP() << "no AVX2";
  for (int64_t n : {256, 512, 4096}) {
    auto x = randn(n, 7 + n, 3.0f);
    for (int i = 0; i < 32; ++i) x[i] = 0;  // an all-zero block: d = 0
    // Block 1 gets d = 1 exactly, so these are exact .5 ties (half-even).
    for (int i = 32; i < 64; ++i) x[i] = 0.25f;
    x[32] = 127.0f, x[33] = 0.5f, x[34] = 1.5f, x[35] = -2.5f;
    std::vector<BlockQ8A> a(n / QK), b(n / QK);
    {
      ScopedSimdLevel at(SimdLevel::Scalar);
      quantize_act_q8a(x.data(), a.data(), n);
    }
    {
      ScopedSimdLevel at(SimdLevel::AVX2);
      quantize_act_q8a(x.data(), b.data(), n);
    }
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(BlockQ8A))) << n;
    std::vector<BlockQ8K> c(n / QK_K), e(n / QK_K);
    {
      ScopedSimdLevel at(SimdLevel::Scalar);
      quantize_act_q8k(x.data(), c.data(), n);
    }
    {
      ScopedSimdLevel at(SimdLevel::AVX2);
      quantize_act_q8k(x.data(), e.data(), n);
    }
    EXPECT_EQ(0, std::memcmp(c.data(), e.data(), c.size() * sizeof(BlockQ8K))) << n;
  }
}

TEST(ActQuant, ErrorWithinHalfStep) {
  const int64_t n = 512;
  auto x = randn(n, 3);
  std::vector<BlockQ8A> a(n / QK);
  quantize_act_q8a_ref(x.data(), a.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const auto& B = a[i / QK];
    EXPECT_LE(std::fabs(B.d * B.qs[i % QK] - x[i]), B.d * 0.5f * 1.0001f);
  }
  for (const auto& B : a) {
    int s = 0;
    for (int i = 0; i < QK; ++i) s += B.qs[i];
    EXPECT_EQ(B.s, B.d * (float)s);
  }
}

// SIMD kernel vs scalar reference on the same (bit-identical) activations.
// Block integer sums are exact in both, so they differ only in the order of
// f32 accumulation of n terms (n = blocks, or cols for float weights):
// each is within gamma_(n+8) * S of the exact sum (n chain adds, one scale
// product, an 8-lane tree of 3 adds, slack), hence |y - y_ref| <= c eps S with
// c = 2 (n + 8) and S the absolute dot bound.
TEST(Matmul, SimdMatchesScalarReference) {
  if (!simd_available()) GTEST_SKIP() << "no AVX2";
  const float eps = std::numeric_limits<float>::epsilon();
  for (GgmlType t : kTypes) {
    for (int64_t cols : {32, 64, 96, 256, 512, 576, 1536, 4096, 33, 100}) {
      if (cols % block_of(t) != 0) continue;
      for (int64_t rows : {1, 3, 5, 13}) {
        const int64_t n_tok = 3;
        auto M = make_matrix(t, rows, cols, (uint32_t)(cols * 31 + rows));
        auto x = randn(n_tok * cols, (uint32_t)cols + 5);
        auto ys = run(M.W, x.data(), n_tok, 2, SimdLevel::AVX2);
        auto yr = run(M.W, x.data(), n_tok, 1, SimdLevel::Scalar);
        auto a = seen_activations(t, x, n_tok, cols);
        const double n = is_quant(t) ? cols / block_of(t) : cols;
        for (int64_t tk = 0; tk < n_tok; ++tk)
          for (int64_t r = 0; r < rows; ++r) {
            const double S = abs_dot_bound(t, M.deq.data() + r * cols, a.data() + tk * cols, cols);
            const double tol = 2 * (n + 8) * eps * S;
            EXPECT_NEAR(ys[tk * rows + r], yr[tk * rows + r], tol)
                << "type " << (int)t << " cols " << cols << " rows " << rows << " r " << r << " t " << tk;
          }
      }
    }
  }
}

// Q2_K, Q3_K and IQ4_XS kernels take the reference's own float steps on the
// same exact integer sums (matmul_lowbit_avx2.cpp), so they give its bits.
TEST(Matmul, LowBitKernelsBitIdenticalToReference) {
  if (!simd_available()) GTEST_SKIP() << "no AVX2";
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_XS})
    for (int64_t cols : {256, 1536})
      for (int64_t rows : {1, 6, 13}) {
        const int64_t n_tok = 5;
        auto M = make_matrix(t, rows, cols, (uint32_t)(cols + rows));
        auto x = randn(n_tok * cols, (uint32_t)rows);
        auto ys = run(M.W, x.data(), n_tok, 2, SimdLevel::AVX2);
        auto yr = run(M.W, x.data(), n_tok, 1, SimdLevel::Scalar);
        ASSERT_EQ(0, std::memcmp(ys.data(), yr.data(), ys.size() * sizeof(float)))
            << type_name((uint32_t)t) << " cols " << cols << " rows " << rows;
      }
}

// A type the engine cannot multiply fails with its name, not a number.
TEST(Matmul, UnsupportedTypeNamedInError) {
  std::vector<uint8_t> w(64);
  std::vector<float> x(32), y(1);
  WeightMatrix W{GgmlType::Q8_1, 1, 32, w.data(), 36};
  ThreadPool pool(1);
  MatmulScratch scratch;
  try {
    matmul(W, x.data(), 1, y.data(), pool, scratch);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported weight type Q8_1"), std::string::npos) << e.what();
  }
}

// Quantized result vs the exact product of the dequantized weights with the
// unquantized activations: the activation rounding moves each a_k by at most
// d/2 = amax_block/254, so |y - y_exact| <= sum_k |w_k| amax_b(k) / 254, plus
// the f32 accumulation term from above. BF16 on the vdpbf16ps path rounds each
// activation to 8 significant bits: |a_k - x_k| <= 2^-8 |x_k|. Runs at the
// scalar and SIMD levels (this CPU's best included, so natively on AVX-512).
TEST(Matmul, QuantizedWithinActivationQuantizationBound) {
  const float eps = std::numeric_limits<float>::epsilon();
  for (SimdLevel lvl : simd_levels())
  for (GgmlType t : kTypes) {
    for (int64_t cols : {256, 512, 1536}) {
      const int64_t rows = 7, n_tok = 2;
      auto M = make_matrix(t, rows, cols, 99);
      auto x = randn(n_tok * cols, 11);
      auto y = run(M.W, x.data(), n_tok, 2, lvl);
      const int bs = is_quant(t) ? block_of(t) : 1;
      auto a = seen_activations(t, x, n_tok, cols, lvl);
      for (int64_t tk = 0; tk < n_tok; ++tk)
        for (int64_t r = 0; r < rows; ++r) {
          const float* w = M.deq.data() + r * cols;
          const float* xr = x.data() + tk * cols;
          double exact = 0, qerr = 0;
          for (int64_t k = 0; k < cols; ++k) exact += (double)w[k] * xr[k];
          if (bs > 1)
            for (int64_t b = 0; b < cols; b += bs) {
              double amax = 0;
              for (int i = 0; i < bs; ++i) amax = std::max(amax, (double)std::fabs(xr[b + i]));
              for (int i = 0; i < bs; ++i) qerr += std::fabs(w[b + i]) * amax / 254.0;
            }
          if (bf16_rounds_acts(t, lvl))
            for (int64_t k = 0; k < cols; ++k) qerr += std::fabs((double)w[k] * xr[k]) * std::ldexp(1.0, -8);
          const double n = is_quant(t) ? cols / bs : cols;
          const double tol = qerr * 1.001 + 2 * (n + 8) * eps * abs_dot_bound(t, w, a.data() + tk * cols, cols);
          EXPECT_NEAR(y[tk * rows + r], exact, tol) << "type " << (int)t << " cols " << cols;
          // Tight check (catches any block-layout slip): against the exact
          // product with the activations the kernel saw, only rounding is
          // left: the f32 chain plus a few eps from dequantize_row's own
          // products (d * sc * q - dmin * m).
          const float* as = a.data() + tk * cols;
          double exact_seen = 0;
          for (int64_t k = 0; k < cols; ++k) exact_seen += (double)w[k] * as[k];
          const double tight = (2 * (n + 8) + 8) * eps * abs_dot_bound(t, w, as, cols);
          EXPECT_NEAR(y[tk * rows + r], exact_seen, tight) << "type " << (int)t << " cols " << cols;
        }
    }
  }
}

// The central contract: row t of a batched product is bit-identical to the
// same row computed alone, for any thread count.
TEST(Matmul, BatchInvariantBitForBit) {
  for (SimdLevel lvl : simd_levels())
    for (GgmlType t : kTypes)
      for (int64_t cols : {256, 768}) {
        const int64_t rows = 37;  // not a multiple of the tile height
        auto M = make_matrix(t, rows, cols, 5);
        auto x = randn(64 * cols, 17);
        std::vector<std::vector<float>> alone(64);
        for (int64_t tk = 0; tk < 64; ++tk) alone[tk] = run(M.W, x.data() + tk * cols, 1, 1, lvl);
        for (int64_t n_tok : {1, 2, 3, 5, 8, 17, 64})
          for (int threads : {1, 2, 3}) {
            auto y = run(M.W, x.data(), n_tok, threads, lvl);
            for (int64_t tk = 0; tk < n_tok; ++tk)
              ASSERT_EQ(0, std::memcmp(y.data() + tk * rows, alone[tk].data(), rows * sizeof(float)))
                  << "level " << simd_level_name(lvl) << " type " << (int)t << " cols " << cols << " n_tok "
                  << n_tok << " threads " << threads << " token " << tk;
          }
      }
}

// The epilogue (bias, then GELU) applied inside the matmul's tasks equals the
// product followed by the same element-wise steps over the whole output, bit
// for bit, for any batch and thread count; and matmul_many applies each
// matrix's own epilogue.
TEST(Matmul, EpilogueEqualsSeparateSteps) {
  const int64_t rows = 203, cols = 256;  // rows: several chunks and a remainder
  auto M = make_matrix(GgmlType::F16, rows, cols, 12);
  auto bias = randn(rows, 13);
  auto x = randn(40 * cols, 14);
  for (int64_t n_tok : {1, 7, 40})
    for (int threads : {1, 2, 3}) {
      auto want = run(M.W, x.data(), n_tok, threads, simd_level());
      for (int64_t tk = 0; tk < n_tok; ++tk)
        for (int64_t r = 0; r < rows; ++r) want[tk * rows + r] += bias[r];
      auto with_bias = run(M.W, x.data(), n_tok, threads, simd_level(), {bias.data()});
      ASSERT_EQ(0, std::memcmp(want.data(), with_bias.data(), want.size() * sizeof(float))) << n_tok << " " << threads;
      gelu_inplace(want.data(), (int64_t)want.size());
      auto with_gelu = run(M.W, x.data(), n_tok, threads, simd_level(), {bias.data(), Activation::GELU});
      ASSERT_EQ(0, std::memcmp(want.data(), with_gelu.data(), want.size() * sizeof(float))) << n_tok << " " << threads;
    }
  ThreadPool pool(2);
  MatmulScratch scratch;
  std::vector<float> y0(7 * rows), y1(7 * rows);
  const WeightMatrix* Ws[2] = {&M.W, &M.W};
  float* ys[2] = {y0.data(), y1.data()};
  const Epilogue eps[2] = {{}, {bias.data(), Activation::GELU}};
  matmul_many(Ws, ys, 2, x.data(), 7, pool, scratch, eps);
  auto plain = run(M.W, x.data(), 7, 2, simd_level());
  auto fused = run(M.W, x.data(), 7, 2, simd_level(), {bias.data(), Activation::GELU});
  EXPECT_EQ(0, std::memcmp(y0.data(), plain.data(), y0.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(y1.data(), fused.data(), y1.size() * sizeof(float)));
  // Matrices whose activations differ (f32 for F16, 8-bit blocks for Q8_0)
  // run one by one: each still gets its own epilogue.
  auto Q = make_matrix(GgmlType::Q8_0, rows, cols, 15);
  const WeightMatrix* mixed[2] = {&Q.W, &M.W};
  const Epilogue mixed_eps[2] = {{bias.data()}, {bias.data(), Activation::GELU}};
  matmul_many(mixed, ys, 2, x.data(), 7, pool, scratch, mixed_eps);
  auto q_biased = run(Q.W, x.data(), 7, 2, simd_level(), {bias.data()});
  EXPECT_EQ(0, std::memcmp(y0.data(), q_biased.data(), y0.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(y1.data(), fused.data(), y1.size() * sizeof(float)));
}

// matmul_each (the per-head projections of latent attention): each matrix
// on its own input gets exactly what matmul gives it, with inputs of
// different widths and formats (of three Q8_0 matrices two share an input,
// converted once, and one has its own) and more matrices than threads.
TEST(Matmul, EachEqualsSeparateCalls) {
  const int64_t n_tok = 5;
  auto A = make_matrix(GgmlType::F16, 96, 56, 21);
  auto B = make_matrix(GgmlType::F32, 64, 96, 22);
  auto C = make_matrix(GgmlType::Q8_0, 40, 64, 23);
  auto D = make_matrix(GgmlType::Q8_0, 24, 64, 24);
  auto E = make_matrix(GgmlType::Q8_0, 16, 64, 28);
  auto xa = randn(n_tok * 56, 25), xb = randn(n_tok * 96, 26), xc = randn(n_tok * 64, 27);
  auto xd = randn(n_tok * 64, 29);
  const WeightMatrix* Ws[5] = {&A.W, &B.W, &C.W, &D.W, &E.W};
  const float* xs[5] = {xa.data(), xb.data(), xc.data(), xd.data(), xc.data()};
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    MatmulScratch scratch;
    std::vector<std::vector<float>> ys(5);
    float* yp[5];
    for (int i = 0; i < 5; ++i) {
      ys[i].assign(n_tok * Ws[i]->rows, std::numeric_limits<float>::quiet_NaN());
      yp[i] = ys[i].data();
    }
    matmul_each(Ws, xs, yp, 5, n_tok, pool, scratch);
    for (int i = 0; i < 5; ++i) {
      auto want = run(*Ws[i], xs[i], n_tok, threads, simd_level());
      ASSERT_EQ(0, std::memcmp(want.data(), ys[i].data(), want.size() * sizeof(float))) << i << " " << threads;
    }
  }
}

TEST(Matmul, LargeBatchManyRowsInvariant) {
  // 512 tokens x 203 rows exercises several token blocks and row chunks.
  const int64_t rows = 203, cols = 256, n_tok = 512;
  for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16}) {
    auto M = make_matrix(t, rows, cols, 8);
    auto x = randn(n_tok * cols, 9);
    auto y = run(M.W, x.data(), n_tok, 3, simd_level());
    for (int64_t tk : {0, 1, 63, 64, 200, 511}) {
      auto y1 = run(M.W, x.data() + tk * cols, 1, 2, simd_level());
      ASSERT_EQ(0, std::memcmp(y.data() + tk * rows, y1.data(), rows * sizeof(float))) << (int)t << " " << tk;
    }
  }
}

TEST(Matmul, GetRowEqualsDequantizeRow) {
  for (GgmlType t : kTypes) {
    auto M = make_matrix(t, 5, 512, 3);
    std::vector<float> a(512), b(512);
    for (int64_t r = 0; r < 5; ++r) {
      get_row(M.W, r, a.data());
      dequantize_row(t, M.W.row(r), b.data(), 512);
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), 512 * 4)) << (int)t;
    }
  }
}

TEST(Matmul, GetRowMatchesQuantizedValues) {
  // Q8_0: d * q exactly; F32: the stored floats.
  auto f = randn(4 * 64, 1);
  std::vector<BlockQ8_0> q(4 * 64 / QK);
  quantize_row(GgmlType::Q8_0, f.data(), q.data(), 4 * 64);
  WeightMatrix W{GgmlType::Q8_0, 4, 64, q.data(), 2 * sizeof(BlockQ8_0)};
  std::vector<float> out(64);
  get_row(W, 2, out.data());
  for (int i = 0; i < 64; ++i) {
    const auto& B = q[4 + i / QK];
    EXPECT_EQ(out[i], fp16_to_fp32(B.d) * B.qs[i % QK]);
  }
  WeightMatrix Wf{GgmlType::F32, 4, 64, f.data(), 64 * 4};
  get_row(Wf, 3, out.data());
  EXPECT_EQ(0, std::memcmp(out.data(), f.data() + 3 * 64, 64 * 4));
}

// An op that produces a matmul's input may convert it itself (ActForm),
// block-range by block-range, and hand it to matmul_prepared: the same bits
// as matmul(); and matmul_rows_then (gate and up with the GLU in their tasks)
// gives every matrix matmul()'s output, with after() seeing each (rows,
// tokens) range once, rows cut at multiples of row_align.
TEST(Matmul, PreparedAndRowsThenEqualMatmul) {
  const int64_t rows = 520, cols = 512;  // rows: several chunks of 32 and a remainder of 8
  for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16, GgmlType::BF16})
    for (bool packed : {false, true}) {
      auto A = make_matrix(t, rows, cols, 31), B = make_matrix(t, rows, cols, 32);
      if (packed && !packable(A.W)) continue;
      const WeightMatrix& WA = packed ? A.P : A.W;
      const WeightMatrix& WB = packed ? B.P : B.W;
      auto x = randn(9 * cols, 33);
      const ActForm form(WA);
      EXPECT_TRUE(form == ActForm(WB));
      for (int64_t n_tok : {1, 3, 9})
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          MatmulScratch scratch;
          const std::string at = std::to_string((int)t) + (packed ? " packed" : "") + " n_tok " +
                                 std::to_string(n_tok) + " threads " + std::to_string(threads);
          auto want_a = run(WA, x.data(), n_tok, threads, simd_level());
          auto want_b = run(WB, x.data(), n_tok, threads, simd_level());
          // Converted in two parts per row, the second starting at a block boundary.
          std::vector<uint8_t> xa(n_tok * form.row_bytes());
          const int64_t cut = cols / 2 / form.block() * form.block();
          for (int64_t tk = 0; tk < n_tok; ++tk) {
            form.convert(x.data() + tk * cols, 0, cut, xa.data() + tk * form.row_bytes());
            form.convert(x.data() + tk * cols, cut, cols, xa.data() + tk * form.row_bytes());
          }
          std::vector<float> ya(n_tok * rows), yb(n_tok * rows);
          const WeightMatrix* Ws[2] = {&WA, &WB};
          float* ys[2] = {ya.data(), yb.data()};
          matmul_prepared(Ws, ys, 2, form.row_bytes() ? xa.data() : (const uint8_t*)x.data(), n_tok, pool, scratch);
          ASSERT_EQ(0, std::memcmp(want_a.data(), ya.data(), ya.size() * sizeof(float))) << at;
          ASSERT_EQ(0, std::memcmp(want_b.data(), yb.data(), yb.size() * sizeof(float))) << at;
          std::fill(ya.begin(), ya.end(), 0.0f);
          std::fill(yb.begin(), yb.end(), 0.0f);
          std::vector<int> seen(n_tok * rows, 0);
          std::mutex mu;
          matmul_rows_then(Ws, ys, 2, x.data(), n_tok, pool, scratch, nullptr, 32,
                           [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
                             std::lock_guard<std::mutex> lock(mu);
                             EXPECT_EQ(0, r0 % 32) << at;
                             EXPECT_TRUE(r1 % 32 == 0 || r1 == rows) << at;
                             for (int64_t tk = t0; tk < t1; ++tk)
                               for (int64_t r = r0; r < r1; ++r) {
                                 // Both outputs are final when after() sees them.
                                 EXPECT_EQ(ya[tk * rows + r], want_a[tk * rows + r]) << at;
                                 EXPECT_EQ(yb[tk * rows + r], want_b[tk * rows + r]) << at;
                                 ++seen[tk * rows + r];
                               }
                           });
          for (int s : seen) ASSERT_EQ(1, s) << at;
        }
    }
}
