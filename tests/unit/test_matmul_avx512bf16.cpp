// The AVX512_BF16 kernel (BF16 weights x bf16-rounded activations,
// vdpbf16ps): against its scalar reference, batch invariance under any
// split, and the dispatch that pairs it with ActFormat::BF16.
//
// Each kernel test runs on the emulated build (SIMDe, tests/avx512_emu/;
// needs only AVX2) and on the native one, which is skipped unless this CPU
// has AVX-512 with AVX512_BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/matmul.h"
#include "ops/matmul_kernels.h"
#include "test_matrix.h"

using namespace kvforge;

namespace {

struct Impl {
  const char* name;
  bool emulated;
  GemmFn (*kernel)(GgmlType);
  GemmFn (*packed)(GgmlType);  // the packed-BF16 kernel
};

void PrintTo(const Impl& i, std::ostream* os) { *os << i.name; }
std::string impl_name(const testing::TestParamInfo<Impl>& i) { return i.param.name; }

const Impl kImpls[] = {
#if defined(KVFORGE_HAVE_AVX512_EMU)
    {"Emulated", true, avx512_emu::gemm_kernel_bf16act_avx512bf16, avx512_emu::gemm_kernel_packed_bf16act_avx512bf16},
#endif
    {"Native", false, avx512::gemm_kernel_bf16act_avx512bf16, avx512::gemm_kernel_packed_bf16act_avx512bf16},
};

bool avx2_available() { return cpu_features().avx2 && cpu_features().fma && cpu_features().f16c; }
bool bf16_native() { return simd_level() >= SimdLevel::AVX512 && cpu_features().avx512bf16; }

// Activations [n_tok][cols]: f32, rounded to bf16 (the kernel's input, one
// row every cols * 2 bytes), and those bf16 values back in f32.
struct Acts {
  std::vector<float> x, seen;  // [n_tok][cols]
  std::vector<bf16_t> b;       // [n_tok][cols]
  size_t stride = 0;
  const uint8_t* data() const { return (const uint8_t*)b.data(); }
};

Acts make_acts(int64_t n_tok, int64_t cols, uint32_t seed) {
  Acts a;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  a.x.resize(n_tok * cols);
  for (auto& v : a.x) v = nd(rng);
  for (size_t i = 0; i < a.x.size(); i += 97) a.x[i] *= 8;  // outliers
  a.b.resize(a.x.size());
  quantize_row(GgmlType::BF16, a.x.data(), a.b.data(), (int64_t)a.x.size());  // round to nearest even
  a.seen.resize(a.x.size());
  for (size_t i = 0; i < a.x.size(); ++i) a.seen[i] = bf16_to_fp32(a.b[i]);
  a.stride = act_row_bytes(ActFormat::BF16, cols);
  return a;
}

std::vector<float> gemm(GemmFn fn, const WeightMatrix& W, const Acts& a, int64_t n_tok) {
  std::vector<float> y(n_tok * W.rows, std::numeric_limits<float>::quiet_NaN());  // [n_tok][rows]
  fn(W, a.data(), a.stride, 0, W.rows, 0, n_tok, y.data());
  return y;
}

double abs_dot(const float* w, const float* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs((double)w[i] * a[i]);
  return s;
}

class Avx512Bf16Kernel : public testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    if (GetParam().emulated) {
      if (!avx2_available()) GTEST_SKIP() << "emulated AVX-512 kernels are built with -mavx2; no AVX2 here";
    } else if (!bf16_native()) {
      GTEST_SKIP() << "this CPU has no AVX-512 with AVX512_BF16 (vdpbf16ps); the emulated build covers the same source";
    }
  }
};

}  // namespace

TEST_P(Avx512Bf16Kernel, OnlyForBf16Weights) {
  EXPECT_NE(GetParam().kernel(GgmlType::BF16), nullptr);
  EXPECT_NE(GetParam().packed(GgmlType::BF16), nullptr);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K}) {
    EXPECT_EQ(GetParam().kernel(t), nullptr) << (int)t;
    EXPECT_EQ(GetParam().packed(t), nullptr) << (int)t;
  }
}

// Products of two bf16 are exact in f32, so kernel and reference differ only
// in the order of the n = cols f32 additions: each is within gamma_(n+8) S
// of the exact sum (S = sum |w_k a_k|, 8 covers the 16-lane tree), hence
// |y - y_ref| <= 2 (n + 8) eps S, the bound of the other float kernels.
// fn on W (M's rows, plain or packed) against the reference on M's plain rows.
void expect_within_reference_bound(GemmFn fn, const WeightMatrix& W, const test::TestMatrix& M, const Acts& A,
                                   int64_t n_tok) {
  const double eps = std::numeric_limits<float>::epsilon();
  const int64_t rows = M.W.rows, cols = M.W.cols;
  auto y = gemm(fn, W, A, n_tok);
  auto yr = gemm(gemm_kernel_bf16act_ref(GgmlType::BF16), M.W, A, n_tok);
  for (int64_t k = 0; k < n_tok; ++k)
    for (int64_t r = 0; r < rows; ++r) {
      const double S = abs_dot(M.deq.data() + r * cols, A.seen.data() + k * cols, cols);
      ASSERT_NEAR(y[k * rows + r], yr[k * rows + r], 2 * (cols + 8) * eps * S)
          << "cols " << cols << " rows " << rows << " n_tok " << n_tok << " r " << r << " t " << k;
    }
}

// Batch invariance: fn on W gives the bits of one call over everything for
// each token alone (all rows) and for every split into row chunks of rcs x
// token chunks of tcs.
void expect_same_bits_under_splits(GemmFn fn, const WeightMatrix& W, const Acts& A, int64_t n_tok,
                                   std::initializer_list<int64_t> rcs, std::initializer_list<int64_t> tcs) {
  const int64_t rows = W.rows;
  const auto full = gemm(fn, W, A, n_tok);
  for (int64_t k = 0; k < n_tok; ++k) {
    std::vector<float> y(n_tok * rows, -1.0f);  // [n_tok][rows]
    fn(W, A.data(), A.stride, 0, rows, k, k + 1, y.data());
    ASSERT_EQ(0, std::memcmp(&y[k * rows], &full[k * rows], rows * sizeof(float))) << "cols " << W.cols << " token " << k;
  }
  for (int64_t rc : rcs)
    for (int64_t tc : tcs) {
      std::vector<float> y(n_tok * rows, -1.0f);  // [n_tok][rows]
      for (int64_t r0 = 0; r0 < rows; r0 += rc)
        for (int64_t t0 = 0; t0 < n_tok; t0 += tc)
          fn(W, A.data(), A.stride, r0, std::min(rows, r0 + rc), t0, std::min(n_tok, t0 + tc), y.data());
      ASSERT_EQ(0, std::memcmp(y.data(), full.data(), y.size() * sizeof(float)))
          << "cols " << W.cols << " row chunk " << rc << " tok chunk " << tc;
    }
}

TEST_P(Avx512Bf16Kernel, MatchesScalarReference) {
  for (int64_t cols : {1, 17, 31, 32, 33, 64, 96, 100, 256, 576, 1536})
    for (int64_t rows : {1, 3, 4, 5, 13})
      for (int64_t n_tok : {1, 2, 3, 4, 6, 9}) {  // partial and full 4-token tiles
        auto M = test::make_matrix(GgmlType::BF16, rows, cols, (uint32_t)(cols * 7 + rows));
        auto A = make_acts(n_tok, cols, (uint32_t)(cols + n_tok));
        ASSERT_NO_FATAL_FAILURE(expect_within_reference_bound(GetParam().kernel(GgmlType::BF16), M.W, M, A, n_tok));
      }
}

// Batch invariance: the output of (r, t) is the same bits whatever range of
// rows and tokens the call covers, including a token alone.
TEST_P(Avx512Bf16Kernel, BatchInvariantUnderAnySplit) {
  const GemmFn fn = GetParam().kernel(GgmlType::BF16);
  for (int64_t cols : {256, 800, 45}) {
    const int64_t rows = 37, n_tok = 11;
    auto M = test::make_matrix(GgmlType::BF16, rows, cols, 21);
    auto A = make_acts(n_tok, cols, 22);
    ASSERT_NO_FATAL_FAILURE(expect_same_bits_under_splits(fn, M.W, A, n_tok, {1, 3, 5, 8, 16}, {1, 2, 3, 5}));
  }
}

// The packed-BF16 kernel ([rows/8][cols/2][8][2]; whole groups: matmul()
// hands a partial last group over as 8 rows of its own): one chain of
// vdpbf16ps per output over the column pairs, so against the reference the
// same exact products in another order, and the same tolerance. Row counts
// of 1 to 9 groups cover single groups, pairs and the 8-group decode tile;
// token counts the 8-token tiles and the 4, 2, 1 remainders.
TEST_P(Avx512Bf16Kernel, PackedMatchesScalarReference) {
  const GemmFn fn = GetParam().packed(GgmlType::BF16);
  for (int64_t cols : {2, 32, 34, 96, 576, 3072})
    for (int64_t rows : {8, 16, 24, 40, 64, 72})
      for (int64_t n_tok : {1, 2, 3, 7, 8, 15}) {
        auto M = test::make_matrix(GgmlType::BF16, rows, cols, (uint32_t)(cols * 7 + rows));
        auto A = make_acts(n_tok, cols, (uint32_t)(cols + n_tok));
        ASSERT_NO_FATAL_FAILURE(expect_within_reference_bound(fn, M.P, M, A, n_tok));
      }
}

// Batch invariance of the packed kernel: the same bits for any range of
// whole groups and tokens, a token alone included.
TEST_P(Avx512Bf16Kernel, PackedBatchInvariantUnderAnySplit) {
  const GemmFn fn = GetParam().packed(GgmlType::BF16);
  for (int64_t cols : {256, 802}) {
    const int64_t rows = 88, n_tok = 21;
    auto M = test::make_matrix(GgmlType::BF16, rows, cols, 31);
    auto A = make_acts(n_tok, cols, 32);
    ASSERT_NO_FATAL_FAILURE(expect_same_bits_under_splits(fn, M.P, A, n_tok, {8, 16, 24, 40}, {1, 2, 3, 5, 9, 13}));
  }
}

INSTANTIATE_TEST_SUITE_P(Matmul, Avx512Bf16Kernel, testing::ValuesIn(kImpls), impl_name);

// The reference itself: the in-order f32 sum of exact products is within
// gamma_n S of the exact dot of the bf16 values, and those are within 2^-8
// (bf16's unit roundoff) of each activation: |y_ref - w.x| <= (n eps + 2^-8) S
// with S = sum |w_k x_k|.
TEST(MatmulBf16Act, ReferenceIsTheBf16RoundedDot) {
  const double eps = std::numeric_limits<float>::epsilon();
  for (int64_t cols : {7, 64, 576, 1536}) {
    const int64_t rows = 5, n_tok = 3;
    auto M = test::make_matrix(GgmlType::BF16, rows, cols, 4);
    auto A = make_acts(n_tok, cols, 5);
    auto y = gemm(gemm_kernel_bf16act_ref(GgmlType::BF16), M.W, A, n_tok);
    for (int64_t k = 0; k < n_tok; ++k)
      for (int64_t r = 0; r < rows; ++r) {
        const float* w = M.deq.data() + r * cols;
        double seen = 0, exact = 0;
        for (int64_t i = 0; i < cols; ++i) {
          seen += (double)w[i] * A.seen[k * cols + i];
          exact += (double)w[i] * A.x[k * cols + i];
        }
        const double S_seen = abs_dot(w, A.seen.data() + k * cols, cols);
        const double S = abs_dot(w, A.x.data() + k * cols, cols);
        EXPECT_NEAR(y[k * rows + r], seen, cols * eps * S_seen) << cols;
        EXPECT_NEAR(y[k * rows + r], exact, cols * eps * S_seen + std::ldexp(1.0, -8) * S) << cols;
      }
  }
}

// matmul() pairs the vdpbf16ps kernels (plain and packed) with bf16-rounded
// activations exactly where the CPU has AVX512_BF16; elsewhere at the AVX512 level BF16 weights
// keep the f32-activation kernel.
TEST(MatmulBf16Act, DispatchFollowsCpuFeature) {
  if (simd_level() < SimdLevel::AVX512)
    GTEST_SKIP() << "best level here is " << simd_level_name(simd_level()) << "; AVX-512 dispatch not reachable";
  const int64_t rows = 21, cols = 576, n_tok = 7;
  auto M = test::make_matrix(GgmlType::BF16, rows, cols, 9);
  auto A = make_acts(n_tok, cols, 10);
  ThreadPool pool(2);
  MatmulScratch scratch;
  std::vector<float> y(n_tok * rows);  // [n_tok][rows]
  matmul(M.W, A.x.data(), n_tok, y.data(), pool, scratch);
  std::vector<float> want(n_tok * rows);  // [n_tok][rows]
  if (cpu_features().avx512bf16) {
    want = gemm(gemm_kernel_bf16act_avx512bf16(GgmlType::BF16), M.W, A, n_tok);
  } else {
    gemm_kernel_avx512(GgmlType::BF16)(M.W, (const uint8_t*)A.x.data(), cols * sizeof(float), 0, rows, 0, n_tok,
                                       want.data());
  }
  EXPECT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * sizeof(float)));
  if (!cpu_features().avx512bf16) return;  // packed BF16 then takes the AVX2 kernel (test_weight_pack.cpp)
  // The packed matrix (21 rows: the last group padded with zero rows) takes
  // the packed vdpbf16ps kernel, the same bits as over all 24 padded rows.
  matmul(M.P, A.x.data(), n_tok, y.data(), pool, scratch);
  WeightMatrix padded = M.P;
  padded.rows = 24;
  std::vector<float> y24 = gemm(gemm_kernel_packed_bf16act_avx512bf16(GgmlType::BF16), padded, A, n_tok);
  for (int64_t t = 0; t < n_tok; ++t)
    EXPECT_EQ(0, std::memcmp(&y[t * rows], &y24[t * 24], rows * sizeof(float))) << "token " << t;
}
