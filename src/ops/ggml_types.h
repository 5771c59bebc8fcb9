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
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

constexpr int QK = 32;     // block length of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL
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
// x[i] = d * (q[i] - 16), q five bits: the low four as in Q4_0, the fifth is
// bit i of qh (a little-endian uint32).
struct BlockQ5_0 {
  fp16_t d;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
};
// x[i] = d * q[i] + m, q five bits as in Q5_0.
struct BlockQ5_1 {
  fp16_t d;
  fp16_t m;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
};
// x[i] = d * kIq4nlValues[q[i]], q four bits laid out as in Q4_0: a
// non-uniform 16-level grid (denser near zero, like the weights).
struct BlockIQ4_NL {
  fp16_t d;
  uint8_t qs[QK / 2];
};
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockIQ4_NL) == 18);

// K-quants: a 256-element super-block split into sub-blocks that carry their
// own small integer scales, themselves scaled by fp16 super-block factors.

// 8 sub-blocks of 32. scales[12] packs 8 six-bit scales and 8 six-bit mins
// (see k4_scale_min). x = d*sc[j] * q - dmin*m[j], q in 0..15. Each group of
// 64 elements uses 32 bytes of qs: low nibbles first, then high nibbles.
struct BlockQ4_K {
  fp16_t d;
  fp16_t dmin;
  uint8_t scales[12];
  uint8_t qs[QK_K / 2];
};
// Like Q4_K plus a fifth bit: bit j of qh[l] is the high bit of element
// 32*j + l. x = d*sc[j] * q - dmin*m[j], q in 0..31.
struct BlockQ5_K {
  fp16_t d;
  fp16_t dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
// 16 sub-blocks of 16 with signed 8-bit scales. x = d*scales[s] * (q - 32),
// q six bits: 4 from ql, 2 from qh. Each half (128 elements) uses 64 bytes of
// ql and 32 of qh.
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  fp16_t d;
};
// 16 sub-blocks of 16. scales[s]: low nibble the scale, high nibble the min.
// Element 128h + 32g + l (h = 0..1, g = 0..3, l = 0..31) is
// (qs[32h + l] >> 2g) & 3 in sub-block 8h + 2g + l/16;
// x = (d * sc) * q - (dmin * m).
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  fp16_t d;
  fp16_t dmin;
};
// 16 sub-blocks of 16 with six-bit scales stored +32 (see q3k_scale).
// Element 128h + 32g + l: low two bits (qs[32h + l] >> 2g) & 3 as in Q2_K,
// and bit 4h + g of hmask[l]; q = low - (bit ? 0 : 4), in -4..3;
// x = (d * (sc - 32)) * q.
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  fp16_t d;
};
// 8 sub-blocks of 32, each laid out as an IQ4_NL block, with six-bit scales
// stored +32: low four bits in nibble j%2 of scales_l[j/2], top two bits
// (scales_h >> 2j) & 3. x = (d * (sc - 32)) * kIq4nlValues[q].
struct BlockIQ4_XS {
  fp16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_K / 64];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// Unpacks the six-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K
// scales[12] array: bytes 0-3 hold scales 0-3, bytes 4-7 mins 0-3 (low six
// bits each); sub-blocks 4-7 take their low four bits from bytes 8-11 and their
// top two bits from the spare top bits of bytes 0-7.
inline void k4_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Six-bit scale s (0..15) of a Q3_K block, still +32: its low four bits are
// nibble s/8 of scales[s%8], its top two bits (scales[8 + s%4] >> 2(s/4)) & 3.
inline int q3k_scale(const uint8_t* sc, int s) {
  return ((sc[s % 8] >> (4 * (s / 8))) & 0xF) | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4);
}

// Six-bit scale j (0..7) of an IQ4_XS block, still +32.
inline int iq4xs_scale(const BlockIQ4_XS& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
}

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

// True when the engine can read and dequantize tensors of this type.
bool type_supported(uint32_t type_id);

// Dequantize n elements (n multiple of the block size) of a row to f32.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);

}  // namespace kvforge
