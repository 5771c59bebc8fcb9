#pragma once
// Tensor element types as numbered in GGUF files, with their block layouts.
// Quantized types store blocks of QK elements; a row's length must be a
// multiple of the block size.
#include <cstddef>
#include <cstdint>
#include <string>

#include "util/fp16.h"

namespace kvforge {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

constexpr int QK = 32;     // block length of Q4_0, Q4_1, Q8_0, Q8_1
constexpr int QK_K = 256;  // super-block length of the K-quants

// x[i] = d * (q[i] - 8), q in the low nibbles for i < 16, high nibbles after.
struct BlockQ4_0 {
  fp16_t d;
  uint8_t qs[QK / 2];
};
// x[i] = d * q[i] + m
struct BlockQ4_1 {
  fp16_t d;
  fp16_t m;
  uint8_t qs[QK / 2];
};
// x[i] = d * q[i]
struct BlockQ8_0 {
  fp16_t d;
  int8_t qs[QK];
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34);

struct TypeTraits {
  const char* name;
  int block_size;      // elements per block (1 for plain floats)
  size_t block_bytes;  // bytes per block
  bool supported;      // can this engine read it?
};

// Traits for a type id; returns nullptr for ids that GGUF does not define.
const TypeTraits* type_traits(uint32_t type_id);
const TypeTraits& type_traits(GgmlType t);
std::string type_name(uint32_t type_id);

// Bytes taken by n elements (n must be a multiple of the block size).
size_t row_bytes(GgmlType t, int64_t n);

// Dequantize n elements (n multiple of the block size) of a row to f32.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);

}  // namespace kvforge
