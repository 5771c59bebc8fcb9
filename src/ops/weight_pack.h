#pragma once
// Interleaved ("x8") weight layouts, made once at load: the blocks of 8
// consecutive rows are stored side by side, so a kernel reads one
// sequential stream, converts 8 row scales with one instruction and gets one
// f32 lane per row. Same bytes as the original, except the K-quants whose
// shared-bit scales are unpacked (Q3_K, Q4_K, Q5_K: 32 bytes more per 8
// rows and super-block, IQ4_XS 16 more, under 3 %; packed_bytes()).
//
// Packed matrix = [rows/8 groups][cols/32 blocks (K-quants: cols/256)] of
// blocks whose quants are "element vectors" E_c: 32 bytes holding elements
// 4c..4c+3 of the 8 rows, row i's four in bytes 4i..4i+3, so one
// maddubs/dpbusd against the four activations broadcast to every dword
// gives each row's partial dot in its own 32-bit lane (no horizontal sums).
//   Q8_0x8: d[8] (fp16, row order), qs[8][32]: qs[c] = E_c.
//   Q4_1x8: d[8], m[8] (fp16, row order), qs[4][32]: byte b of qs[m] holds
//           E_m's byte b in its low nibble and E_{m+4}'s in its high one
//           (elements 4m..4m+3 and 16+4m..16+4m+3: so byte 4i + j of qs[m]
//           is simply row i's plain qs byte 4m + j).
//   Q4_0x8 (also IQ4_NL): d[8], qs[4][32] as in Q4_1x8.
//   Q5_0x8, Q5_1x8: as Q4_0x8 / Q4_1x8 plus the fifth bits as one 32-byte
//           bit plane qh: bit c of qh[b] is the fifth bit of E_c's byte b,
//           so a kernel gets E_c's with one shift and one mask.
//   (ops/nibpack_x8.h has the nibble kernels' shared part.)
// K-quants (256-element super-blocks): element vectors E_c, c = 0..63.
// The sub-block scales are unpacked to bytes at pack time (row order).
//   Q4_Kx8: d[8], dmin[8], sc[j][8] (sub-block j's six-bit scales),
//           mn[p][8][2] (the mins of sub-blocks 2p, 2p+1 side by side),
//           qs[32][32]: byte b of qs[m] holds E_m's byte b in its low
//           nibble and E_{m+32}'s in its high one. 1184 bytes, 32 more
//           than the 8 rows' 1152: the scales no longer share bits.
//   Q5_Kx8: Q4_Kx8, then qh[8][32]: bit k of byte b of qh[n] is the fifth
//           bit of E_{n+8k}'s byte b (so sub-block j's are bit j of qh[0..7]).
//           1440 bytes, 32 more than the 8 rows'.
//   Q3_Kx8: d[8], sc[p][8][2] (the scales - 32 of sub-blocks 2p, 2p+1 side
//           by side, as Q6_Kx8's), ql[16][32]: bits 2k, 2k+1 of byte b of
//           ql[n] are the low two bits of E_{n+16k}'s byte b, qh[8][32]: bit
//           k of byte b of qh[n] is its hmask bit of E_{n+8k}'s byte b.
//           912 bytes, 32 more than the 8 rows'.
//   Q6_Kx8: d[8], sc[p][8][2] (int8 scales of sub-blocks 2p, 2p+1 side by
//           side), ql[32][32] (low four bits, nibbles as Q4_Kx8's qs),
//           qh[16][32]: bits 2k, 2k+1 of byte b of qh[n] are the top two
//           bits of E_{n+16k}'s byte b. Same 1680 bytes as the 8 rows.
//   Q2_Kx8: d[8], dmin[8], sc[p][8][2] (the plain scale bytes, scale in the
//           low nibble and min in the high one, of sub-blocks 2p, 2p+1 side
//           by side), qs[16][32]: bits 2k, 2k+1 of byte b of qs[n] are
//           E_{n+16k}'s byte b. Same 672 bytes as the 8 rows.
//   IQ4_XSx8: d[8], sc[p][8][2] (the scales - 32 of sub-blocks 2p, 2p+1 side
//           by side), qs[32][32]: the IQ4_NL table indices, nibbles as
//           Q4_Kx8's qs. 1104 bytes, 16 more than the 8 rows'.
// F16 is interleaved element by element instead, in blocks of kRows16 = 64
// rows: block b holds
//   [cols][64] fp16, element k of rows 64b..64b+63 side by side,
// so one 16-byte load is one column of a group of 8 rows (a lane per row),
// two adjacent groups are one 32-byte load, and a GEMM needs no horizontal
// sums. BF16 likewise, by pairs of columns:
//   [cols/2][64][2] bf16, dword i of a 256-byte column pair holding row
//   64b+i's elements 2j (low half) and 2j+1 (high half),
// so one 32-byte load gives a group's two columns as f32 with one shift
// (2j: the bf16 in the top half, zeros below) and one blend of the loaded
// words with that shifted vector's zero low halves (2j+1): bf16 -> f32 is
// exactly a 16-bit shift; with AVX512_BF16, dword i of a pair is a
// vdpbf16ps operand as it is (matmul_avx512bf16.cpp). A decode tile of up
// to 8 groups inside one block reads one sequential stream (eight 8-row
// streams 12 KiB apart lost ~30 % of one core's read bandwidth); the last
// block is padded with zero rows.
#include <cstddef>
#include <cstdint>

#include "ops/ggml_types.h"

namespace kvforge {

struct WeightMatrix;

constexpr int kPackRows = 8;
constexpr int kRows16 = 64;  // rows per block of the F16/BF16 layouts

// F16 and BF16: packed in blocks of kRows16 rows (the others in groups of 8).
inline bool packs_in_blocks16(GgmlType t) { return t == GgmlType::F16 || t == GgmlType::BF16; }

// Where the group of 8 rows from row r (a multiple of 8; for any r: row r's
// element 0) starts in a packed F16/BF16 matrix of cols columns, in
// elements. Its column k (F16) is k * kRows16 elements further, its column
// pair j (BF16) j * 2 * kRows16; the next group of the same block starts 8
// (F16) or 16 (BF16) elements on.
inline size_t group16_offset(int64_t cols, int64_t r, bool bf16) {
  return (size_t)(r / kRows16) * kRows16 * cols + (size_t)(r % kRows16) * (bf16 ? 2 : 1);
}
// Rows from r to the end of its block of kRows16 (F16/BF16), at most r1 - r.
inline int64_t rows16_in_block(int64_t r, int64_t r1) {
  const int64_t end = (r / kRows16 + 1) * kRows16;
  return (end < r1 ? end : r1) - r;
}

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
struct BlockQ4_Kx8 {
  fp16_t d[8];
  fp16_t dmin[8];
  uint8_t sc[8][8];
  uint8_t mn[4][8][2];
  uint8_t qs[32][32];
};
struct BlockQ5_Kx8 : BlockQ4_Kx8 {
  uint8_t qh[8][32];
};
struct BlockQ3_Kx8 {
  fp16_t d[8];
  int8_t sc[8][8][2];
  uint8_t ql[16][32];
  uint8_t qh[8][32];
};
struct BlockQ6_Kx8 {
  fp16_t d[8];
  int8_t sc[8][8][2];
  uint8_t ql[32][32];
  uint8_t qh[16][32];
};
struct BlockQ2_Kx8 {
  fp16_t d[8];
  fp16_t dmin[8];
  uint8_t sc[8][8][2];
  uint8_t qs[16][32];
};
struct BlockIQ4_XSx8 {
  fp16_t d[8];
  int8_t sc[4][8][2];
  uint8_t qs[32][32];
};
static_assert(sizeof(BlockQ2_Kx8) == 8 * sizeof(BlockQ2_K));
static_assert(sizeof(BlockIQ4_XSx8) == 8 * sizeof(BlockIQ4_XS) + 16);
static_assert(sizeof(BlockQ4_Kx8) == 8 * sizeof(BlockQ4_K) + 32);
static_assert(sizeof(BlockQ5_Kx8) == 8 * sizeof(BlockQ5_K) + 32);
static_assert(sizeof(BlockQ6_Kx8) == 8 * sizeof(BlockQ6_K));
static_assert(sizeof(BlockQ3_Kx8) == 8 * sizeof(BlockQ3_K) + 32);
static_assert(sizeof(BlockQ4_1x8) == 8 * sizeof(BlockQ4_1));
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0));
static_assert(sizeof(BlockIQ4_NLx8) == 8 * sizeof(BlockIQ4_NL));
static_assert(sizeof(BlockQ5_0x8) == 8 * sizeof(BlockQ5_0));
static_assert(sizeof(BlockQ5_1x8) == 8 * sizeof(BlockQ5_1));
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0));

// Whether W (plain layout) can be packed: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL,
// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS with rows % 8 == 0; F16 with
// cols % 8 == 0 or BF16 with cols % 2 == 0, any rows (the last group padded
// with zero rows: a vocabulary of 50257, GPT-2's output head, packs too).
bool packable(const WeightMatrix& W);
// Bytes of W's packed form (W.rows * W.row_stride, more for Q3_K, Q4_K, Q5_K,
// IQ4_XS, and F16/BF16 padded to whole groups).
size_t packed_bytes(const WeightMatrix& W);
// Writes W's packed form into dst (packed_bytes(W) bytes). Returns the
// packed view (data = dst, interleave = kPackRows).
WeightMatrix pack_matrix(const WeightMatrix& W, void* dst);
// Row r of a packed matrix, in the plain block layout of W.type
// (W.row_stride bytes).
void gather_row(const WeightMatrix& W, int64_t r, void* dst);
// The group of 8 rows from row r (r % 8 == 0) of a packed F16/BF16 matrix
// as a packed matrix of its own (rows = 8; its columns keep the block's
// stride, which the kernels take from group16_offset).
WeightMatrix packed_group16(const WeightMatrix& W, int64_t r);

}  // namespace kvforge
