#pragma once
// Test helper: a random weight matrix [rows][cols] of type t in the plain
// layout (rows drawn from N(0, 0.05) and quantized; K-quants, which
// quantize_row cannot make, from random bytes), its dequantized f32 values,
// and, when packable, its x8-interleaved form.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ops/ggml_types.h"
#include "ops/matmul.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::test {

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
    // K-quants: random bytes are valid blocks (every scale, min and q value
    // occurs); only the fp16 super-block factors need sane magnitudes.
    for (auto& b : m.plain) b = (uint8_t)rng();
    std::uniform_real_distribution<float> u(1e-4f, 2e-3f);
    const int64_t nb = cols / QK_K;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = m.plain.data() + r * rb + b * (rb / nb);
        const fp16_t d = fp32_to_fp16(u(rng)), dmin = fp32_to_fp16(u(rng));
        if (t == GgmlType::Q6_K) {
          std::memcpy(blk + offsetof(BlockQ6_K, d), &d, 2);
        } else {  // Q4_K, Q5_K: d, dmin first
          std::memcpy(blk, &d, 2);
          std::memcpy(blk + 2, &dmin, 2);
        }
      }
  }
  m.W = WeightMatrix{t, rows, cols, m.plain.data(), rb};
  m.deq.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) get_row(m.W, r, m.deq.data() + r * cols);
  if (packable(m.W)) {
    m.packed.resize(rb * rows);
    m.P = pack_matrix(m.W, m.packed.data());
  }
  return m;
}

}  // namespace kvforge::test
