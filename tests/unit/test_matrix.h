#pragma once
// Test helper: a random weight matrix [rows][cols] of type t in the plain
// layout (rows drawn from N(0, 0.05) and quantized; the types quantize_row
// cannot make, from random bytes), its dequantized f32 values, and, when
// packable, its x8-interleaved form.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "ops/ggml_types.h"
#include "ops/matmul.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::test {

// Byte offsets of the fp16 factors inside one block of t: random bytes make
// a valid block of every quantized type except there (they must be finite).
inline std::vector<size_t> fp16_fields(GgmlType t) {
  switch (t) {
    case GgmlType::F16: case GgmlType::Q4_0: case GgmlType::Q8_0: case GgmlType::Q5_0:
    case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return {0};
    case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
    case GgmlType::Q2_K: return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case GgmlType::Q3_K: return {offsetof(BlockQ3_K, d)};
    case GgmlType::Q6_K: return {offsetof(BlockQ6_K, d)};
    default: return {};
  }
}

struct TestMatrix {
  std::vector<uint8_t> plain, packed;  // [rows * row_bytes]
  std::vector<float> deq;              // [rows][cols]
  WeightMatrix W, P;                   // plain view; packed view (when packable)
};

inline TestMatrix make_matrix(GgmlType t, int64_t rows, int64_t cols, uint32_t seed) {
  TestMatrix m;
  const size_t rb = row_bytes(t, cols);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.05f);
  std::vector<float> f(cols);  // [cols]
  m.plain.resize(rb * rows);
  if (quantize_row_supported(t)) {
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : f) v = nd(rng);
      quantize_row(t, f.data(), m.plain.data() + r * rb, cols);
    }
  } else {
    // Random bytes are valid blocks (every scale, min and q value occurs);
    // only the fp16 factors need sane magnitudes (2e-3 x a 6-bit scale x
    // a K-quant's q, or 5e-4 x an IQ4 grid value, stays near the N(0, 0.05)
    // of the quantized types).
    for (auto& b : m.plain) b = (uint8_t)rng();
    const TypeTraits& tr = type_traits(t);
    const bool small = t == GgmlType::IQ4_NL || t == GgmlType::IQ4_XS;
    std::uniform_real_distribution<float> u(small ? 1e-5f : 1e-4f, small ? 5e-4f : 2e-3f);
    const size_t n_blocks = m.plain.size() / tr.block_bytes;
    for (size_t b = 0; b < n_blocks; ++b)
      for (size_t off : fp16_fields(t)) {
        const fp16_t h = fp32_to_fp16(u(rng));
        std::memcpy(m.plain.data() + b * tr.block_bytes + off, &h, 2);
      }
  }
  m.W = WeightMatrix{t, rows, cols, m.plain.data(), rb};
  m.deq.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) get_row(m.W, r, m.deq.data() + r * cols);
  if (packable(m.W)) {
    m.packed.resize(packed_bytes(m.W));
    m.P = pack_matrix(m.W, m.packed.data());
  }
  return m;
}

}  // namespace kvforge::test
