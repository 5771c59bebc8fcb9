#include "ops/weight_pack.h"

#include <cstring>

#include "ops/matmul.h"

namespace kvforge {

bool packable(const WeightMatrix& W) {
  if (W.interleave != 0 || W.rows <= 0 || W.rows % kPackRows != 0) return false;
  if (W.type == GgmlType::F16) return W.cols % 8 == 0;
  return W.type == GgmlType::Q4_1 || W.type == GgmlType::Q8_0;
}

namespace {

// Position of row-in-group i's 16 nibble bytes inside a BlockQ4_1x8's qs.
inline uint8_t* q4_slot(BlockQ4_1x8& b, int i) { return &b.qs[i % 4][16 * (i / 4)]; }
inline const uint8_t* q4_slot(const BlockQ4_1x8& b, int i) { return &b.qs[i % 4][16 * (i / 4)]; }

}  // namespace

WeightMatrix pack_matrix(const WeightMatrix& W, void* dst) {
  WeightMatrix P = W;
  P.data = dst;
  P.interleave = kPackRows;
  if (W.type == GgmlType::F16) {  // [rows/8][cols][8]
    fp16_t* o = (fp16_t*)dst;
    for (int64_t r = 0; r < W.rows; ++r) {
      const fp16_t* src = (const fp16_t*)W.row(r);
      fp16_t* g = o + (r / kPackRows) * W.cols * kPackRows + r % kPackRows;
      for (int64_t k = 0; k < W.cols; ++k) g[k * kPackRows] = src[k];
    }
    return P;
  }
  const int64_t nb = W.cols / QK;
  for (int64_t g = 0; g < W.rows / kPackRows; ++g) {
    for (int i = 0; i < kPackRows; ++i) {
      const uint8_t* src = W.row(g * kPackRows + i);
      for (int64_t b = 0; b < nb; ++b) {
        if (W.type == GgmlType::Q4_1) {
          const BlockQ4_1& s = ((const BlockQ4_1*)src)[b];
          BlockQ4_1x8& o = ((BlockQ4_1x8*)dst)[g * nb + b];
          o.d[i] = s.d;
          o.m[i] = s.m;
          std::memcpy(q4_slot(o, i), s.qs, 16);
        } else {
          const BlockQ8_0& s = ((const BlockQ8_0*)src)[b];
          BlockQ8_0x8& o = ((BlockQ8_0x8*)dst)[g * nb + b];
          o.d[i] = s.d;
          std::memcpy(o.qs[i], s.qs, 32);
        }
      }
    }
  }
  return P;
}

void gather_row(const WeightMatrix& W, int64_t r, void* dst) {
  if (W.type == GgmlType::F16) {
    const fp16_t* g = (const fp16_t*)W.data + (r / kPackRows) * W.cols * kPackRows + r % kPackRows;
    for (int64_t k = 0; k < W.cols; ++k) ((fp16_t*)dst)[k] = g[k * kPackRows];
    return;
  }
  const int64_t nb = W.cols / QK, g = r / kPackRows;
  const int i = (int)(r % kPackRows);
  for (int64_t b = 0; b < nb; ++b) {
    if (W.type == GgmlType::Q4_1) {
      const BlockQ4_1x8& s = ((const BlockQ4_1x8*)W.data)[g * nb + b];
      BlockQ4_1& o = ((BlockQ4_1*)dst)[b];
      o.d = s.d[i];
      o.m = s.m[i];
      std::memcpy(o.qs, q4_slot(s, i), 16);
    } else {
      const BlockQ8_0x8& s = ((const BlockQ8_0x8*)W.data)[g * nb + b];
      BlockQ8_0& o = ((BlockQ8_0*)dst)[b];
      o.d = s.d[i];
      std::memcpy(o.qs, s.qs[i], 32);
    }
  }
}

}  // namespace kvforge
