#pragma once
// Interleaved ("x8") weight layouts, made once at load: the blocks of 8
// consecutive rows are stored side by side, so a kernel reads one
// sequential stream, converts 8 row scales with one instruction and gets one
// f32 lane per row. Same bytes as the original (no expansion).
//
// Packed matrix = [rows/8 groups][cols/32 blocks] of:
//   Q4_1x8: d[8], m[8] (fp16, row order), qs[4][32]: qs[p] = the 16 nibble
//           bytes of row p, then those of row p+4 (so one 32-byte load feeds
//           two rows; low nibbles = elements 0..15, high = 16..31).
//   Q4_0x8 (also IQ4_NL): d[8], qs[4][32] as in Q4_1x8.
//   Q5_0x8, Q5_1x8: as Q4_0x8 / Q4_1x8 plus the fifth bits as one 32-byte
//           bit plane qh: bit k of qh[j] is the fifth bit of the element
//           whose nibble lands in byte j of the k-th 32-byte nibble vector
//           (k = 2p: low nibbles of qs[p], k = 2p + 1: its high nibbles), so
//           a kernel gets those bits with one shift and one mask.
//   Q8_0x8: d[8] (fp16, row order), qs[8][32] (row order).
// F16 is interleaved element by element instead: group g holds
//   [cols][8] fp16, element k of rows 8g..8g+7 side by side,
// so one 16-byte load is one column of 8 rows (a lane per row) and a GEMM
// needs no horizontal sums.
#include <cstdint>

#include "ops/ggml_types.h"

namespace kvforge {

struct WeightMatrix;

constexpr int kPackRows = 8;

struct BlockQ4_1x8 {
  fp16_t d[8];
  fp16_t m[8];
  uint8_t qs[4][32];
};
struct BlockQ4_0x8 {
  fp16_t d[8];
  uint8_t qs[4][32];
};
using BlockIQ4_NLx8 = BlockQ4_0x8;
struct BlockQ5_0x8 {
  fp16_t d[8];
  uint8_t qh[32];
  uint8_t qs[4][32];
};
struct BlockQ5_1x8 {
  fp16_t d[8];
  fp16_t m[8];
  uint8_t qh[32];
  uint8_t qs[4][32];
};
struct BlockQ8_0x8 {
  fp16_t d[8];
  int8_t qs[8][32];
};
static_assert(sizeof(BlockQ4_1x8) == 8 * sizeof(BlockQ4_1));
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0));
static_assert(sizeof(BlockIQ4_NLx8) == 8 * sizeof(BlockIQ4_NL));
static_assert(sizeof(BlockQ5_0x8) == 8 * sizeof(BlockQ5_0));
static_assert(sizeof(BlockQ5_1x8) == 8 * sizeof(BlockQ5_1));
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0));

// Whether W (plain layout) can be packed: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL,
// Q8_0 or F16, rows % 8 == 0 (F16 also cols % 8 == 0).
bool packable(const WeightMatrix& W);
// Writes W's packed form into dst (W.rows * W.row_stride bytes). Returns the
// packed view (data = dst, interleave = kPackRows).
WeightMatrix pack_matrix(const WeightMatrix& W, void* dst);
// Row r of a packed matrix, in the plain block layout of W.type
// (W.row_stride bytes).
void gather_row(const WeightMatrix& W, int64_t r, void* dst);

}  // namespace kvforge
