// Interleaved (x8) weight layouts: packing is lossless (get_row / gather),
// the packed kernels agree with the scalar reference within the bound of the
// plain kernels, and keep the batch-invariance contract bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/matmul.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "test_matrix.h"
#include "simd_levels.h"

using namespace kvforge;

namespace {

constexpr auto make_packed = test::make_matrix;  // every type used here is packable

const GgmlType kPackTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL,
                               GgmlType::Q8_0, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                               GgmlType::IQ4_XS, GgmlType::Q2_K, GgmlType::F16, GgmlType::BF16};
bool float16(GgmlType t) { return t == GgmlType::F16 || t == GgmlType::BF16; }

// BF16 weights on a CPU with AVX512_BF16, at the current level: the
// vdpbf16ps kernels, on activations rounded to bf16.
bool bf16_rounds_acts(GgmlType t) {
  return t == GgmlType::BF16 && simd_level() >= SimdLevel::AVX512 && cpu_features().avx512bf16;
}

bool kquant(GgmlType t) { return act_format(t) == ActFormat::Q8K; }
// A column count of the given size class that t's blocks divide.
int64_t cols_for(GgmlType t, int64_t cols) { return kquant(t) ? (cols + 255) / 256 * 256 : cols; }

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<float> run(const WeightMatrix& W, const float* x, int64_t n_tok, int threads) {
  ThreadPool pool(threads);
  MatmulScratch scratch;
  std::vector<float> y(n_tok * W.rows);
  matmul(W, x, n_tok, y.data(), pool, scratch);
  return y;
}

}  // namespace

TEST(WeightPack, GetRowUnchanged) {
  for (GgmlType t : kPackTypes) {
    const int64_t cols = cols_for(t, 96);
    auto m = make_packed(t, 24, cols, 1);
    ASSERT_TRUE(packable(m.W));
    std::vector<float> a(cols), b(cols);
    std::vector<uint8_t> row(m.W.row_stride);
    for (int64_t r = 0; r < 24; ++r) {
      get_row(m.W, r, a.data());
      get_row(m.P, r, b.data());
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * cols)) << (int)t << " row " << r;
      gather_row(m.P, r, row.data());  // the very bytes (K-quant scales re-encoded)
      ASSERT_EQ(0, std::memcmp(row.data(), m.W.row(r), row.size())) << (int)t << " row " << r;
    }
  }
}

// Packed SIMD vs plain scalar reference: both sum exact per-block integer
// dots in f32, only the order of the f32 additions differs, so (as in
// test_matmul) |y - y_ref| <= 2 (n + 8) eps S, n = blocks, S = sum |w a|
// (taken with the unquantized activations, +10% for their rounding).
TEST(WeightPack, MatchesPlainReference) {
  for (GgmlType t : kPackTypes)
    for (int64_t cols : {64, 576, 1536}) {
      if (kquant(t)) cols = cols_for(t, cols);
      auto m = make_packed(t, 40, cols, 2);  // 5 groups: pairs of groups and a single one
      auto x = randn(5 * cols, 3);
      const auto ref = [&] {
        ScopedSimdLevel at(SimdLevel::Scalar);
        return run(m.W, x.data(), 5, 1);
      }();
      auto y = run(m.P, x.data(), 5, 2);
      std::vector<float> wrow(cols);
      for (int64_t tk = 0; tk < 5; ++tk)
        for (int64_t r = 0; r < 40; ++r) {
          get_row(m.W, r, wrow.data());
          double mag = 0;
          for (int64_t i = 0; i < cols; ++i) mag += std::fabs(wrow[i] * x[tk * cols + i]);
          // F16, BF16: f32 activations, terms = elements (two fma chains of cols/2).
          const int64_t terms = float16(t) ? cols : cols / 32;
          double tol = 2.0 * (terms + 8) * std::numeric_limits<float>::epsilon() * mag * 1.1;
          if (bf16_rounds_acts(t)) tol += std::ldexp(mag, -8);  // vdpbf16ps: each a_k within 2^-8 of x_k
          ASSERT_NEAR(y[tk * 40 + r], ref[tk * 40 + r], tol) << (int)t << " cols " << cols;
        }
    }
}

TEST(WeightPack, BatchInvariantBitForBit) {
  for (SimdLevel lvl : simd_levels()) {
    ScopedSimdLevel at(lvl);
    for (GgmlType t : kPackTypes) {
      const int64_t cols = cols_for(t, 576);
      auto m = make_packed(t, 200, cols, 4);  // 25 groups
      auto x = randn(70 * cols, 5);
      std::vector<std::vector<float>> alone(70);
      for (int64_t tk = 0; tk < 70; ++tk) alone[tk] = run(m.P, x.data() + tk * cols, 1, 1);
      for (int64_t n_tok : {1, 2, 3, 4, 5, 8, 9, 15, 70})  // decode tiles of 8, 4, 2, 1; prefill from 16
        for (int threads : {1, 2, 3}) {
          auto y = run(m.P, x.data(), n_tok, threads);
          for (int64_t tk = 0; tk < n_tok; ++tk)
            ASSERT_EQ(0, std::memcmp(y.data() + tk * 200, alone[tk].data(), 200 * sizeof(float)))
                << (int)t << " n_tok " << n_tok << " threads " << threads << " token " << tk << " level "
                << simd_level_name(lvl);
        }
    }
  }
}

// The packed K-quant and nibble kernels take the scalar reference's own
// steps on exact integer sums (ops/kpack_x8.h, ops/nibpack_x8.h): the same
// bits as the plain reference, at every SIMD level, tiles of 8 and 4 tokens
// and single ones (21 tokens on 2 threads, then the last one alone; 16 or
// more: AVX2's prepared two-group tiles of IQ4_NL, Q3_K and IQ4_XS).
TEST(WeightPack, QuantBitIdenticalToReference) {
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q3_K,
                     GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::Q2_K}) {
    auto m = make_packed(t, 24, 768, 9);
    auto x = randn(21 * 768, 10);
    for (int i = 0; i < 21 * 768; i += 101) x[i] *= 8;  // outliers: small activation steps elsewhere
    const auto ref = [&] {
      ScopedSimdLevel at(SimdLevel::Scalar);
      return run(m.W, x.data(), 21, 1);
    }();
    for (SimdLevel lvl : simd_levels()) {
      ScopedSimdLevel at(lvl);
      auto y = run(m.P, x.data(), 21, 2);
      ASSERT_EQ(0, std::memcmp(y.data(), ref.data(), y.size() * sizeof(float))) << (int)t << " " << simd_level_name(lvl);
      // A single token (decode: on AVX2 the signed nibble types take other tiles then).
      auto y1 = run(m.P, x.data() + 20 * 768, 1, 1);
      ASSERT_EQ(0, std::memcmp(y1.data(), ref.data() + 20 * 24, y1.size() * sizeof(float)))
          << (int)t << " " << simd_level_name(lvl) << " one token";
    }
  }
}

// matmul_many gives each matrix exactly what matmul gives it.
TEST(WeightPack, MatmulManyEqualsSeparate) {
  auto a = make_packed(GgmlType::Q4_1, 64, 576, 6), b = make_packed(GgmlType::Q4_1, 192, 576, 7);
  auto x = randn(3 * 576, 8);
  ThreadPool pool(2);
  MatmulScratch scratch;
  std::vector<float> ya(3 * 64), yb(3 * 192);
  const WeightMatrix* Ws[2] = {&a.P, &b.P};
  float* ys[2] = {ya.data(), yb.data()};
  matmul_many(Ws, ys, 2, x.data(), 3, pool, scratch);
  auto ra = run(a.P, x.data(), 3, 2), rb = run(b.P, x.data(), 3, 2);
  ASSERT_EQ(0, std::memcmp(ya.data(), ra.data(), ya.size() * 4));
  ASSERT_EQ(0, std::memcmp(yb.data(), rb.data(), yb.size() * 4));
}

// F16 and BF16 at every level: the packed kernels' one fma chain per output
// over k = 0..cols-1 in order (matmul_packed_avx2.cpp), written out here in
// scalar code (except BF16 on the vdpbf16ps kernel, whose chain takes two
// products per step: test_matmul_avx512bf16.cpp): bit for bit, for row counts that leave one group, two or
// three of a block of four, or a partial last group (1 and 7 rows of it),
// column counts that are not multiples of 8 (BF16 packs pairs of columns),
// and token counts that take tiles of 6, 4 and 1.
TEST(WeightPack, Float16PackedIsOneFmaChain) {
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16})
    for (int64_t rows : {8, 16, 24, 40, 3, 33, 47})
      for (int64_t cols : {16, 50, 768}) {
        if (t == GgmlType::F16 && cols % 8 != 0) continue;
        auto m = make_packed(t, rows, cols, 12);
        ASSERT_TRUE(packable(m.W)) << rows << " x " << cols;
        auto x = randn(15 * cols, 13);
        for (SimdLevel lvl : simd_levels()) {
          if (lvl == SimdLevel::Scalar) continue;  // the packed reference: the plain scalar dot
          ScopedSimdLevel at(lvl);
          if (bf16_rounds_acts(t)) continue;
          for (int64_t n_tok : {15, 1}) {
            auto y = run(m.P, x.data(), n_tok, 2);
            ASSERT_EQ(y, run(m.P, x.data(), n_tok, 3)) << "3 threads";
            for (int64_t tk = 0; tk < n_tok; ++tk)
              for (int64_t r = 0; r < rows; ++r) {
                float s = 0;
                for (int64_t k = 0; k < cols; ++k) s = std::fma(m.deq[r * cols + k], x[tk * cols + k], s);
                ASSERT_EQ(s, y[tk * rows + r]) << (int)t << " " << rows << " x " << cols << " n_tok " << n_tok
                                               << " token " << tk << " row " << r;
              }
          }
        }
      }
}

// F16 and BF16 pack any row count, the last block of kRows16 rows padded
// with zero rows (GetRowUnchanged-style check on 21 and 85 rows: inside the
// first block and past it); columns only in whole pairs (BF16) or eights
// (F16); quantized types only in whole groups.
TEST(WeightPack, Float16TailsPackOthersStayPlain) {
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16})
    for (int64_t rows : {21, 85}) {
      auto m = make_packed(t, rows, 64, 1);
      ASSERT_TRUE(packable(m.W));
      EXPECT_EQ(m.packed.size(), (rows + kRows16 - 1) / kRows16 * kRows16 * m.W.row_stride);
      std::vector<uint8_t> row(m.W.row_stride);
      for (int64_t r = 0; r < rows; ++r) {
        gather_row(m.P, r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), m.W.row(r), row.size())) << (int)t << " row " << r;
      }
    }
  EXPECT_FALSE(packable(make_packed(GgmlType::BF16, 16, 63, 1).W));
  EXPECT_FALSE(packable(make_packed(GgmlType::F16, 16, 60, 1).W));
  EXPECT_TRUE(packable(make_packed(GgmlType::BF16, 16, 62, 1).W));
  EXPECT_FALSE(packable(make_packed(GgmlType::Q8_0, 20, 64, 1).W));
}

