// AVX-512 matmul kernels, called directly: against the scalar reference,
// bit for bit against the AVX2 kernels where they share the f32 chain, and
// batch invariance under any (r0, r1, t0, t1) split.
//
// Each test runs twice: on the emulated build of the kernel sources (SIMDe,
// tests/avx512_emu/; needs only AVX2, so it runs on every dev machine) and
// on the native build, which is skipped unless this CPU has AVX-512 VNNI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "ops/matmul.h"
#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "test_matrix.h"

using namespace kvforge;

namespace {

struct Impl {
  const char* name;
  bool emulated;
  GemmFn (*plain)(GgmlType);
  GemmFn (*packed)(GgmlType);
  GemmFn (*x16)(GgmlType);  // tiles of two row groups (matmul_x16_avx512.cpp), for 2-16 tokens
};

void PrintTo(const Impl& i, std::ostream* os) { *os << i.name; }
std::string impl_name(const testing::TestParamInfo<Impl>& i) { return i.param.name; }

const Impl kImpls[] = {
#if defined(KVFORGE_HAVE_AVX512_EMU)
    {"Emulated", true, avx512_emu::gemm_kernel_avx512, avx512_emu::gemm_kernel_packed_avx512,
     avx512_emu::gemm_kernel_x16_avx512},
#endif
    {"Native", false, avx512::gemm_kernel_avx512, avx512::gemm_kernel_packed_avx512, avx512::gemm_kernel_x16_avx512},
};

bool avx2_available() { return cpu_features().avx2 && cpu_features().fma && cpu_features().f16c; }

const GgmlType kPlainTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,   GgmlType::Q8_0, GgmlType::Q4_0,
                                GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,   GgmlType::IQ4_NL,
                                GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,   GgmlType::Q5_K,
                                GgmlType::Q6_K, GgmlType::IQ4_XS};
// Integer dots with the AVX2 f32 chain: bit-identical to the AVX2 kernels.
const GgmlType kIntTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                              GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q2_K, GgmlType::Q3_K,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS};

// Elements per activation block (1: f32 activations, no constraint on cols).
int64_t block_of(GgmlType t) {
  switch (act_format(t)) {
    case ActFormat::Q8A: return QK;
    case ActFormat::Q8K: return QK_K;
    default: return 1;
  }
}
const GgmlType kPackedTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL,
                                  GgmlType::Q8_0, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                                  GgmlType::IQ4_XS, GgmlType::Q2_K, GgmlType::F16};
const GgmlType kX16Types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                              GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q8_0};
bool has_x16(GgmlType t) { return std::find(std::begin(kX16Types), std::end(kX16Types), t) != std::end(kX16Types); }

using Mat = test::TestMatrix;
constexpr auto make_mat = test::make_matrix;

// Activations [n_tok][cols] in the kernel's input format, and dequantized
// back to f32 (what the kernel really multiplies with).
struct Acts {
  std::vector<float> x, seen;  // [n_tok][cols]
  std::vector<uint8_t> qa;     // [n_tok * stride]
  size_t stride = 0;
  const uint8_t* data() const { return qa.empty() ? (const uint8_t*)x.data() : qa.data(); }
};

Acts make_acts(GgmlType t, int64_t n_tok, int64_t cols, uint32_t seed) {
  Acts a;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  a.x.resize(n_tok * cols);
  for (auto& v : a.x) v = nd(rng);
  for (size_t i = 0; i < a.x.size(); i += 97) a.x[i] *= 8;  // outliers
  a.seen = a.x;
  const ActFormat fmt = act_format(t);
  if (fmt == ActFormat::F32) {
    a.stride = cols * sizeof(float);
    return a;
  }
  a.stride = act_row_bytes(t, cols);
  a.qa.resize(n_tok * a.stride);
  for (int64_t k = 0; k < n_tok; ++k) {
    auto* row = a.qa.data() + k * a.stride;
    for (int64_t i = 0; i < cols; ++i) {
      if (fmt == ActFormat::Q8A && i == 0) quantize_act_q8a_ref(a.x.data() + k * cols, (BlockQ8A*)row, cols);
      if (fmt == ActFormat::Q8K && i == 0) quantize_act_q8k_ref(a.x.data() + k * cols, (BlockQ8K*)row, cols);
      if (fmt == ActFormat::Q8A) {
        const auto& B = ((const BlockQ8A*)row)[i / QK];
        a.seen[k * cols + i] = B.d * B.qs[i % QK];
      } else {
        const auto& B = ((const BlockQ8K*)row)[i / QK_K];
        a.seen[k * cols + i] = B.d * B.qs[i % QK_K];
      }
    }
  }
  return a;
}

std::vector<float> gemm(GemmFn fn, const WeightMatrix& W, const Acts& a, int64_t n_tok) {
  std::vector<float> y(n_tok * W.rows, std::numeric_limits<float>::quiet_NaN());  // [n_tok][rows]
  fn(W, a.data(), a.stride, 0, W.rows, 0, n_tok, y.data());
  return y;
}

// Bound scale: sum_k |w_k| |a_k|, |w_k| replaced by 2 max|w| of its
// activation block for quantized types (covers the Q4_1 and K-quant min
// terms), as in test_matmul.cpp.
double abs_dot_bound(GgmlType t, const float* w, const float* a, int64_t cols) {
  const int64_t bs = block_of(t);
  double s = 0;
  for (int64_t b = 0; b < cols; b += bs) {
    double wmax = 0;
    for (int i = 0; i < bs; ++i) wmax = std::max(wmax, (double)std::fabs(w[b + i]));
    for (int i = 0; i < bs; ++i) s += (bs == 1 ? std::fabs(w[b + i]) : 2 * wmax) * std::fabs(a[b + i]);
  }
  return s;
}

class Avx512Kernels : public testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    const auto& c = cpu_features();
    if (GetParam().emulated) {
      if (!avx2_available()) GTEST_SKIP() << "emulated AVX-512 kernels are built with -mavx2; no AVX2 here";
    } else if (simd_level() < SimdLevel::AVX512 && !(c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq &&
                                                      c.avx512vnni && avx2_available())) {
      GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL/DQ/VNNI; the emulated build covers the same source";
    }
  }
};

}  // namespace

TEST_P(Avx512Kernels, EveryExpectedKernelExists) {
  for (GgmlType t : kPlainTypes) EXPECT_NE(GetParam().plain(t), nullptr) << (int)t;
  for (GgmlType t : kPackedTypes) EXPECT_NE(GetParam().packed(t), nullptr) << (int)t;
  for (GgmlType t : kPackedTypes) EXPECT_EQ(GetParam().x16(t) != nullptr, has_x16(t)) << (int)t;
}

// Same bound as Matmul.SimdMatchesScalarReference: exact integer block sums,
// only the f32 accumulation order differs: |y - y_ref| <= 2 (n + 8) eps S.
TEST_P(Avx512Kernels, PlainMatchesScalarReference) {
  const double eps = std::numeric_limits<float>::epsilon();
  for (GgmlType t : kPlainTypes)
    for (int64_t cols : {32, 64, 96, 256, 512, 576, 1536, 33, 100, 17}) {
      if (cols % block_of(t) != 0) continue;
      for (int64_t rows : {1, 3, 5, 13})
      for (int64_t n_tok : {1, 2, 3, 6}) {  // partial and full token tiles (4 for float and Q8A, 2 for K-quants)
        auto M = make_mat(t, rows, cols, (uint32_t)(cols * 7 + rows));
        auto A = make_acts(t, n_tok, cols, (uint32_t)cols + 1);
        auto y = gemm(GetParam().plain(t), M.W, A, n_tok);
        auto yr = gemm(gemm_kernel_ref(t), M.W, A, n_tok);
        const double n = cols / block_of(t);
        for (int64_t k = 0; k < n_tok; ++k)
          for (int64_t r = 0; r < rows; ++r) {
            const double S = abs_dot_bound(t, M.deq.data() + r * cols, A.seen.data() + k * cols, cols);
            ASSERT_NEAR(y[k * rows + r], yr[k * rows + r], 2 * (n + 8) * eps * S)
                << "type " << (int)t << " cols " << cols << " rows " << rows << " n_tok " << n_tok << " r " << r
                << " t " << k;
          }
      }
    }
}

TEST_P(Avx512Kernels, PackedMatchesScalarReference) {
  const double eps = std::numeric_limits<float>::epsilon();
  for (GgmlType t : kPackedTypes)
    for (int64_t cols : {32, 64, 576, 1536}) {
      if (cols % block_of(t) != 0) continue;
      const int64_t rows = 24, n_tok = 7;
      auto M = make_mat(t, rows, cols, (uint32_t)cols);
      auto A = make_acts(t, n_tok, cols, 3);
      auto y = gemm(GetParam().packed(t), M.P, A, n_tok);
      auto yr = gemm(gemm_kernel_ref(t), M.W, A, n_tok);
      const double n = cols / block_of(t);  // f32 steps of the chain
      for (int64_t k = 0; k < n_tok; ++k)
        for (int64_t r = 0; r < rows; ++r) {
          const double S = abs_dot_bound(t, M.deq.data() + r * cols, A.seen.data() + k * cols, cols);
          ASSERT_NEAR(y[k * rows + r], yr[k * rows + r], 2 * (n + 8) * eps * S)
              << "type " << (int)t << " cols " << cols << " r " << r << " t " << k;
        }
    }
}

// The quantized kernels keep the AVX2 f32 chain (only the exact integer dots
// are computed differently), so an AVX-512 machine gives the same bits as an
// AVX2 one: stricter than the tolerance against the scalar reference above
// (which the AVX2 kernels meet too). The plain float kernels use 16 lanes
// per row and are not covered by this; packed F16 is, below.
TEST_P(Avx512Kernels, QuantBitIdenticalToAvx2) {
  if (!avx2_available()) GTEST_SKIP() << "no AVX2";
  for (GgmlType t : kIntTypes)
    for (int64_t cols : {32, 256, 1536})
    for (int64_t rows : {16, 19}) {  // 19: row remainder tiles too (not packable)
      if (cols % block_of(t) != 0) continue;
      const int64_t n_tok = 9;
      auto M = make_mat(t, rows, cols, 11);
      auto A = make_acts(t, n_tok, cols, 12);
      auto y = gemm(GetParam().plain(t), M.W, A, n_tok);
      auto y2 = gemm(gemm_kernel_avx2(t), M.W, A, n_tok);
      ASSERT_EQ(0, std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)))
          << "plain " << (int)t << " cols " << cols << " rows " << rows;
      if (t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::IQ4_XS) {  // the reference's own steps
        auto yr = gemm(gemm_kernel_ref(t), M.W, A, n_tok);
        ASSERT_EQ(0, std::memcmp(y.data(), yr.data(), y.size() * sizeof(float))) << "ref " << (int)t << " " << cols;
      }
      if (!packable(M.W)) continue;
      auto yp = gemm(GetParam().packed(t), M.P, A, n_tok);
      auto yp2 = gemm(gemm_kernel_packed_avx2(t), M.P, A, n_tok);
      ASSERT_EQ(0, std::memcmp(yp.data(), yp2.data(), yp.size() * sizeof(float))) << "packed " << (int)t << " " << cols;
      if (has_x16(t)) {
        auto yx = gemm(GetParam().x16(t), M.P, A, n_tok);
        ASSERT_EQ(0, std::memcmp(yx.data(), yp2.data(), yx.size() * sizeof(float))) << "x16 " << (int)t << " " << cols;
      }
      if (act_format(t) == ActFormat::Q8K) {  // the packed K-quants: the reference's own steps (kpack_x8.h)
        auto yr = gemm(gemm_kernel_ref(t), M.W, A, n_tok);
        ASSERT_EQ(0, std::memcmp(yp.data(), yr.data(), yp.size() * sizeof(float))) << "packed ref " << (int)t;
      }
    }
}

// Extreme bytes (Q8_0 weights -128 and 127, activations +-127, nibbles 0
// and 15, Q5 values 0 and 31) with all scales 1.0: every partial sum is an
// integer below 2^24, so all f32 steps are exact and each kernel must return
// the exact integer dot. This pins the biased u8 operands and the int32
// reduction trees. Token 0 is all -127 and row 0 all q = 0 (weight -8 or
// -16): the largest partial sums, which the AVX2 packed Q4_0/Q5_0 kernels
// keep in int16 lanes (<= 32512). 18 tokens and 3 row groups: the AVX2
// packed Q8_0 kernel's tile form (a pair of groups, then one alone) whose
// maddubs pairs reach -32768 (matmul_packed_avx2.cpp); then the first 15
// and 3 tokens alone: its decode tiles (8 + 4 + 2 + 1 tokens, 2 + 1).
TEST_P(Avx512Kernels, ExtremeBytesExact) {
  const int64_t rows = 24, cols = 256, n_tok = 18;
  const fp16_t one = fp32_to_fp16(1.0f), minus8 = fp32_to_fp16(-8.0f);
  std::mt19937 rng(5);
  Acts A = make_acts(GgmlType::Q8_0, n_tok, cols, 1);
  const float xv[] = {-127, -100, 0, 50, 127};
  for (int64_t i = 0; i < n_tok * cols; ++i) A.x[i] = i < cols ? -127.0f : i % QK == 0 ? 127.0f : xv[rng() % 5];
  for (int64_t k = 0; k < n_tok; ++k)
    quantize_act_q8a_ref(A.x.data() + k * cols, (BlockQ8A*)(A.qa.data() + k * A.stride), cols);
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1}) {
    const bool q5 = t == GgmlType::Q5_0 || t == GgmlType::Q5_1, with_min = t == GgmlType::Q4_1 || t == GgmlType::Q5_1;
    Mat M;
    const int64_t nb = cols / QK;
    const size_t rb = row_bytes(t, cols);
    M.plain.resize(rb * rows);
    std::vector<int> wq(rows * cols);  // [rows][cols] the integer weights
    const int8_t q8v[] = {-128, -127, -1, 0, 1, 127};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = M.plain.data() + r * rb + b * (rb / nb);
        if (t == GgmlType::Q8_0) {
          auto& B = *(BlockQ8_0*)blk;
          B.d = one;
          for (int i = 0; i < QK; ++i) wq[r * cols + b * QK + i] = B.qs[i] = q8v[rng() % 6];
        } else {
          // Q4_0 1 * (q - 8), Q4_1 1 * q - 8; Q5_0 1 * (q - 16), Q5_1 1 * q - 16.
          auto* d = (fp16_t*)blk;
          d[0] = one;
          if (with_min) d[1] = q5 ? fp32_to_fp16(-16.0f) : minus8;
          uint8_t* qs = blk + row_bytes(t, QK) - QK / 2;  // every layout ends with qs
          uint8_t* qh = q5 ? qs - 4 : nullptr;
          if (qh) std::memset(qh, 0, 4);
          for (int i = 0; i < QK; ++i) {
            const int q5v[] = {0, 15, 16, 31};
            const int q = r == 0 ? 0 : q5 ? q5v[rng() % 4] : (rng() % 2 ? 15 : 0);
            if (i < QK / 2) qs[i] = (uint8_t)(q & 15);
            else qs[i - QK / 2] |= (uint8_t)((q & 15) << 4);
            if (qh && q >= 16) qh[i / 8] |= (uint8_t)(1 << (i % 8));
            wq[r * cols + b * QK + i] = q - (q5 ? 16 : 8);
          }
        }
      }
    M.W = WeightMatrix{t, rows, cols, M.plain.data(), rb};
    std::vector<GemmFn> fns = {GetParam().plain(t), gemm_kernel_ref(t)};
    std::vector<const WeightMatrix*> ws = {&M.W, &M.W};
    if (packable(M.W)) {
      M.packed.resize(packed_bytes(M.W));
      M.P = pack_matrix(M.W, M.packed.data());
      fns.push_back(GetParam().packed(t));
      ws.push_back(&M.P);
      fns.push_back(GetParam().x16(t));
      ws.push_back(&M.P);
      if (avx2_available()) {
        fns.push_back(gemm_kernel_packed_avx2(t));
        ws.push_back(&M.P);
      }
    }
    if (avx2_available()) {  // AVX2 Q8_0: a -128 weight against a negative activation must not wrap
      fns.push_back(gemm_kernel_avx2(t));
      ws.push_back(&M.W);
    }
    for (size_t f = 0; f < fns.size(); ++f)
      for (int64_t n : {n_tok, int64_t{15}, int64_t{3}}) {  // prefill tiles, then decode tiles of 8, 4, 2, 1
        auto y = gemm(fns[f], *ws[f], A, n);
        for (int64_t k = 0; k < n; ++k)
          for (int64_t r = 0; r < rows; ++r) {
            int64_t exact = 0;
            for (int64_t i = 0; i < cols; ++i) exact += (int64_t)wq[r * cols + i] * (int64_t)A.x[k * cols + i];
            ASSERT_EQ(y[k * rows + r], (float)exact)
                << "type " << (int)t << " kernel " << f << " n_tok " << n << " r " << r << " t " << k;
          }
      }
  }
}

// Extreme bytes for the x8 K-quant layouts whose integer sums run closest to
// the int16 limits: IQ4_XS grid values -127 and 113 (the AVX2 kernel's
// maddubs pairs reach 2*127*127 = 32258: two of them added before widening
// would saturate) and Q2_K q = 3 with scale and min 15, against activations
// +-127 (token 0 all -127, token 1 all 127), all scales at their ends, d = 1
// (dmin = 1). Packed AVX-512 and AVX2 kernels must give the scalar
// reference's bits; rows 0..7 hold only the extremes, the rest random bytes.
// 6 tokens, and 18: AVX2 IQ4_XS's xor form (16 or more; -127 against 127 is
// 127 x -128 per product), pairs of row groups and one alone.
TEST_P(Avx512Kernels, PackedKQuantExtremeBytes) {
  const int64_t rows = 24, cols = 512, n_tok = 18;
  std::mt19937 rng(17);
  Acts A = make_acts(GgmlType::Q4_K, n_tok, cols, 1);
  const float xv[] = {-127, -100, 0, 50, 127};
  for (int64_t i = 0; i < n_tok * cols; ++i) A.x[i] = i < cols ? -127.0f : i < 2 * cols ? 127.0f : xv[rng() % 5];
  for (int64_t k = 0; k < n_tok; ++k)
    quantize_act_q8k_ref(A.x.data() + k * cols, (BlockQ8K*)(A.qa.data() + k * A.stride), cols);
  const fp16_t one = fp32_to_fp16(1.0f);
  for (GgmlType t : {GgmlType::IQ4_XS, GgmlType::Q2_K}) {
    auto M = make_mat(t, rows, cols, 19);
    const int64_t nb = cols / QK_K;
    for (int64_t r = 0; r < 8; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = M.plain.data() + r * M.W.row_stride + b * (M.W.row_stride / nb);
        const uint8_t ends[] = {0x00, 0xFF, 0xF0, 0x0F};  // nibbles / 2-bit fields and scales at their ends
        if (t == GgmlType::IQ4_XS) {
          auto& B = *(BlockIQ4_XS*)blk;
          B.d = one;
          B.scales_h = (uint16_t)(r % 2 ? 0xFFFF : rng());
          for (auto& v : B.scales_l) v = r % 2 ? 0xFF : r == 0 ? 0x00 : ends[rng() % 4];  // scale - 32: 31 or -32
          for (auto& v : B.qs) v = r == 0 ? 0x00 : ends[rng() % 4];                        // -127 or 113
        } else {
          auto& B = *(BlockQ2_K*)blk;
          B.d = B.dmin = one;
          for (auto& v : B.scales) v = r < 4 ? 0xFF : ends[rng() % 4];  // scale, min: 15 or 0
          for (auto& v : B.qs) v = r == 0 ? 0xFF : ends[rng() % 4];      // q = 3 or 0
        }
      }
    M.P = pack_matrix(M.W, M.packed.data());
    for (int64_t nt : {int64_t{6}, n_tok}) {
      const auto yr = gemm(gemm_kernel_ref(t), M.W, A, nt);
      const auto yp = gemm(GetParam().packed(t), M.P, A, nt);
      ASSERT_EQ(0, std::memcmp(yp.data(), yr.data(), yp.size() * sizeof(float))) << "packed " << (int)t << " " << nt;
      if (avx2_available()) {
        const auto y2 = gemm(gemm_kernel_packed_avx2(t), M.P, A, nt);
        ASSERT_EQ(0, std::memcmp(y2.data(), yr.data(), y2.size() * sizeof(float))) << "packed avx2 " << (int)t << " " << nt;
      }
    }
  }
}

// The packed nibble kernels (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; ops/nibpack_x8.h)
// take the scalar reference's own f32 steps on exact integer block dots:
// bit for bit the reference, on this ISA and on AVX2, for 1, 3, 5 groups
// and token counts that take every tile size (8, 4, 1) alone and together.
// The weights are random bytes (every nibble and fifth bit occurs; random
// signed scales and mins),
// with some blocks at the extremes: all nibbles 0 or 15, all fifth bits set
// or clear (IQ4_NL: all -127 or 113), and tokens whose every activation is
// +-127, which drive the int16 partial sums of the AVX2 kernels to their
// bounds (IQ4_NL's xor form: -127 against 127 is 127 x -128 per product). A saturating sum, a wrong element order or an fma where the
// reference rounds twice changes bits here.
TEST_P(Avx512Kernels, NibblePackedBitIdenticalToReference) {
  std::mt19937 rng(41);
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL})
    for (int64_t rows : {8, 24, 40})
      for (int64_t cols : {32, 96, 576}) {
        const TypeTraits& tr = type_traits(t);
        const size_t rb = row_bytes(t, cols);
        Mat M;
        M.plain.resize(rb * rows);
        for (auto& b : M.plain) b = (uint8_t)rng();
        const bool q5 = t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
        std::uniform_real_distribution<float> u(1e-4f, 2e-3f);
        for (size_t o = 0; o < M.plain.size(); o += tr.block_bytes) {
          uint8_t* blk = M.plain.data() + o;
          const int kind = (int)(rng() % 4);  // 0, 1: random; 2: all q = 0; 3: all q = max
          if (kind >= 2) {
            std::memset(blk + tr.block_bytes - QK / 2, kind == 2 ? 0x00 : 0xff, QK / 2);  // every layout ends with qs
            if (q5) std::memset(blk + tr.block_bytes - QK / 2 - 4, kind == 2 ? 0x00 : 0xff, 4);
          }
          for (size_t off : test::fp16_fields(t)) {
            const fp16_t h = fp32_to_fp16(rng() % 2 ? u(rng) : -u(rng));
            std::memcpy(blk + off, &h, 2);
          }
        }
        M.W = WeightMatrix{t, rows, cols, M.plain.data(), rb};
        M.packed.resize(packed_bytes(M.W));
        M.P = pack_matrix(M.W, M.packed.data());
        const int64_t n_tok = 21;
        Acts A = make_acts(t, n_tok, cols, (uint32_t)(rows + cols));
        for (int64_t i = 0; i < cols; ++i) {  // token 1: all -127; token 4: +-127; token 17: all 127
          A.x[1 * cols + i] = -1.0f;
          A.x[4 * cols + i] = rng() % 2 ? 3.0f : -3.0f;
          A.x[17 * cols + i] = 2.0f;
        }
        for (int64_t k : {1, 4, 17})
          quantize_act_q8a_ref(A.x.data() + k * cols, (BlockQ8A*)(A.qa.data() + k * A.stride), cols);
        const auto yr = gemm(gemm_kernel_ref(t), M.W, A, n_tok);
        std::vector<std::pair<const char*, GemmFn>> fns = {{"this ISA", GetParam().packed(t)},
                                                           {"x16", GetParam().x16(t)}};
        if (avx2_available()) fns.push_back({"AVX2", gemm_kernel_packed_avx2(t)});
        for (auto [name, fn] : fns)
          // tiles of 8, 4 and 1 token(s), alone and together; 16 or more: AVX2 IQ4_NL's xor form
          for (int64_t nt : {1, 3, 4, 9, 13, 16, 21}) {
            const auto y = gemm(fn, M.P, A, nt);
            ASSERT_EQ(0, std::memcmp(y.data(), yr.data(), y.size() * sizeof(float)))
                << name << " type " << (int)t << " rows " << rows << " cols " << cols << " n_tok " << nt;
          }
      }
}

// The two-group tiles (matmul_x16_avx512.cpp) past one column chunk (256
// blocks: the chains resume from the partial sums in y) and with a lone
// last group: the AVX2 packed kernels' bits.
TEST_P(Avx512Kernels, X16LongRowsBitIdenticalToAvx2) {
  if (!avx2_available()) GTEST_SKIP() << "no AVX2";
  for (GgmlType t : kX16Types) {
    const int64_t rows = 24, cols = 259 * QK, n_tok = 5;
    auto M = make_mat(t, rows, cols, 31);
    auto A = make_acts(t, n_tok, cols, 32);
    const auto yx = gemm(GetParam().x16(t), M.P, A, n_tok);
    const auto y2 = gemm(gemm_kernel_packed_avx2(t), M.P, A, n_tok);
    ASSERT_EQ(0, std::memcmp(yx.data(), y2.data(), yx.size() * sizeof(float))) << (int)t;
  }
}

// Batch invariance: the output of (r, t) is the same bits whatever range of
// rows and tokens the call covers, including a token alone.
TEST_P(Avx512Kernels, BatchInvariantUnderAnySplit) {
  struct Case {
    GgmlType t;
    bool packed;
    bool x16 = false;
  };
  std::vector<Case> cases;
  for (GgmlType t : kPlainTypes) cases.push_back({t, false});
  for (GgmlType t : kPackedTypes) cases.push_back({t, true});
  for (GgmlType t : kX16Types) cases.push_back({t, true, true});
  for (const Case& c : cases)
    for (int64_t cols : {256, 800, 768}) {
      if (cols % block_of(c.t) != 0) continue;
      const int64_t rows = c.packed ? 40 : 37, n_tok = 11;
      const int64_t step = c.packed ? kPackRows : 1;
      auto M = make_mat(c.t, rows, cols, 21);
      auto A = make_acts(c.t, n_tok, cols, 22);
      const WeightMatrix& W = c.packed ? M.P : M.W;
      const GemmFn fn = c.x16 ? GetParam().x16(c.t) : c.packed ? GetParam().packed(c.t) : GetParam().plain(c.t);
      const auto full = gemm(fn, W, A, n_tok);
      for (int64_t k = 0; k < n_tok; ++k) {  // one token, all rows
        std::vector<float> y(n_tok * rows, -1.0f);  // [n_tok][rows]
        fn(W, A.data(), A.stride, 0, rows, k, k + 1, y.data());
        ASSERT_EQ(0, std::memcmp(&y[k * rows], &full[k * rows], rows * sizeof(float)))
            << (int)c.t << " packed " << c.packed << " token " << k;
      }
      // Row ranges cut at odd places (multiples of 8 for packed), token
      // ranges that break the tiles differently.
      for (int64_t rc : {1, 3, 5, 8, 16})
        for (int64_t tc : {1, 2, 3, 5}) {
          const int64_t rstep = rc * step;
          std::vector<float> y(n_tok * rows, -1.0f);  // [n_tok][rows]
          for (int64_t r0 = 0; r0 < rows; r0 += rstep)
            for (int64_t t0 = 0; t0 < n_tok; t0 += tc)
              fn(W, A.data(), A.stride, r0, std::min(rows, r0 + rstep), t0, std::min(n_tok, t0 + tc), y.data());
          ASSERT_EQ(0, std::memcmp(y.data(), full.data(), y.size() * sizeof(float)))
              << (int)c.t << " packed " << c.packed << " cols " << cols << " row chunk " << rstep << " tok chunk "
              << tc;
        }
    }
}

// Prefill calls (16 tokens or more) of the quantized x8 types take the
// prepared pair tiles (matmul_pairs_avx512.cpp, matmul_kpairs_avx512.cpp:
// two row groups per zmm); fewer tokens the one-group tiles. Both, and the
// AVX2 kernels, give the same bits: every group count (tiles of two pairs,
// one pair, a group alone), one block and SmolLM2's 576 or 1536 columns,
// token counts that leave each remainder tile, and row / token splits of
// 16 tokens or more.
TEST_P(Avx512Kernels, PairTilesBitIdenticalToOneGroupTiles) {
  for (GgmlType t : kIntTypes)
    for (int64_t rows : {8, 16, 24, 32, 56})
      for (int64_t cols : act_format(t) == ActFormat::Q8K ? std::vector<int64_t>{256, 1536}
                                                          : std::vector<int64_t>{32, 576}) {
        auto M = make_mat(t, rows, cols, (uint32_t)(rows * 7 + cols));
        const GemmFn fn = GetParam().packed(t);
        for (int64_t n_tok : {16, 23, 64}) {
          auto A = make_acts(t, n_tok, cols, (uint32_t)(n_tok + rows));
          const auto y = gemm(fn, M.P, A, n_tok);
          std::vector<float> y1(n_tok * rows, std::numeric_limits<float>::quiet_NaN());  // [n_tok][rows]
          for (int64_t k = 0; k < n_tok; k += 5)  // one-group tiles: fewer than 16 tokens per call
            fn(M.P, A.data(), A.stride, 0, rows, k, std::min(n_tok, k + 5), y1.data());
          ASSERT_EQ(0, std::memcmp(y.data(), y1.data(), y.size() * sizeof(float)))
              << "type " << (int)t << " rows " << rows << " cols " << cols << " n_tok " << n_tok;
          std::vector<float> ys(n_tok * rows, std::numeric_limits<float>::quiet_NaN());
          for (int64_t t0 = 0, t1; t0 < n_tok; t0 = t1) {  // chunks of 16 tokens, the last one up to 31
            t1 = n_tok - t0 < 32 ? n_tok : t0 + 16;
            for (int64_t r0 = 0; r0 < rows; r0 += 24)
              fn(M.P, A.data(), A.stride, r0, std::min(rows, r0 + 24), t0, t1, ys.data());
          }
          ASSERT_EQ(0, std::memcmp(y.data(), ys.data(), y.size() * sizeof(float)))
              << "split, type " << (int)t << " rows " << rows << " cols " << cols << " n_tok " << n_tok;
          if (avx2_available()) {
            const auto y2 = gemm(gemm_kernel_packed_avx2(t), M.P, A, n_tok);
            ASSERT_EQ(0, std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)))
                << "AVX2, type " << (int)t << " rows " << rows << " cols " << cols << " n_tok " << n_tok;
          }
        }
      }
}

// Packed F16: a zmm holds two 8-row groups, each lane the AVX2 kernel's
// chain (acc = 0, one fma per column in order), so the bits match the AVX2
// kernel for every shape: odd group counts (rows 8, 24, 40), column counts
// off the slice width, token counts that leave each remainder tile, one
// token (the decode path), and the same again under random (r0, r1, t0, t1)
// splits (row cuts at multiples of 8, up to 12 groups; token cuts of 1..10).
TEST_P(Avx512Kernels, PackedF16BitIdenticalToAvx2) {
  if (!avx2_available()) GTEST_SKIP() << "no AVX2";
  const GgmlType t = GgmlType::F16;
  const GemmFn fn = GetParam().packed(t), fn2 = gemm_kernel_packed_avx2(t);
  ASSERT_NE(fn, nullptr);
  std::mt19937 rng(31);
  for (int64_t rows : {8, 16, 24, 40, 768})  // whole groups: a partial last one never reaches a kernel (matmul.cpp)
    for (int64_t cols : {8, 64, 72, 768}) {
      auto M = make_mat(t, rows, cols, (uint32_t)(rows * 1000 + cols));
      ASSERT_TRUE(packable(M.W));
      for (int64_t n_tok : {1, 2, 5, 6, 7, 13, 64}) {
        auto A = make_acts(t, n_tok, cols, (uint32_t)(n_tok + cols));
        const auto y2 = gemm(fn2, M.P, A, n_tok);
        const auto y = gemm(fn, M.P, A, n_tok);
        ASSERT_EQ(0, std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)))
            << "rows " << rows << " cols " << cols << " n_tok " << n_tok;
        for (int rep = 0; rep < 2; ++rep) {
          std::vector<float> ys(n_tok * rows, std::numeric_limits<float>::quiet_NaN());  // [n_tok][rows]
          for (int64_t r0 = 0, r1; r0 < rows; r0 = r1) {
            r1 = std::min<int64_t>(rows, r0 + kPackRows * (1 + rng() % 12));
            for (int64_t t0 = 0, t1; t0 < n_tok; t0 = t1) {
              t1 = std::min<int64_t>(n_tok, t0 + 1 + rng() % 10);
              fn(M.P, A.data(), A.stride, r0, r1, t0, t1, ys.data());
            }
          }
          ASSERT_EQ(0, std::memcmp(ys.data(), y2.data(), ys.size() * sizeof(float)))
              << "split " << rep << " rows " << rows << " cols " << cols << " n_tok " << n_tok;
        }
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Matmul, Avx512Kernels, testing::ValuesIn(kImpls), impl_name);

// The dispatch picks the AVX-512 kernels only at that level.
TEST(MatmulAvx512, DispatchFollowsSimdLevel) {
  if (simd_level() < SimdLevel::AVX512)
    GTEST_SKIP() << "best level here is " << simd_level_name(simd_level()) << "; AVX-512 dispatch not reachable";
  EXPECT_NE(gemm_kernel_packed_avx512(GgmlType::Q4_1), nullptr);
  EXPECT_NE(gemm_kernel_packed_avx512(GgmlType::F16), nullptr);
}
