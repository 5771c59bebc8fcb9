#include "ops/weight_pack.h"

#include <cstring>

#include "ops/matmul.h"

namespace kvforge {

bool packable(const WeightMatrix& W) {
  if (W.interleave != 0 || W.rows <= 0 || W.rows % kPackRows != 0) return false;
  switch (W.type) {
    case GgmlType::F16: return W.cols % 8 == 0;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::IQ4_NL: case GgmlType::Q8_0:
      return true;
    default: return false;
  }
}

namespace {

// Position of row-in-group i's 16 nibble bytes inside a nibble x8 block's qs.
template <class X>
uint8_t* q4_slot(X& b, int i) { return &b.qs[i % 4][16 * (i / 4)]; }

// Fifth bit of element e of row-in-group i in a Q5 x8 block's bit plane:
// its nibble is in byte 16 (i / 4) + e % 16 of vector k = 2 (i % 4) + e / 16.
inline int q5_plane_byte(int i, int e) { return 16 * (i / 4) + e % 16; }
inline int q5_plane_bit(int i, int e) { return 2 * (i % 4) + e / 16; }

// Copies plain block s into slot i of x8 block o (to_plain: the reverse).
// Same fields, other places: d (and m) in row order, the quants as above.
template <class S, class X>
void move_block(S& s, X& o, int i, bool to_plain) {
  auto mv = [&](auto& plain, auto& packed) { to_plain ? (void)(plain = packed) : (void)(packed = plain); };
  mv(s.d, o.d[i]);
  if constexpr (requires { s.m; }) mv(s.m, o.m[i]);
  if constexpr (sizeof(s.qs) == 32) {  // Q8_0: row order
    to_plain ? std::memcpy(s.qs, o.qs[i], 32) : std::memcpy(o.qs[i], s.qs, 32);
  } else {
    to_plain ? std::memcpy(s.qs, q4_slot(o, i), 16) : std::memcpy(q4_slot(o, i), s.qs, 16);
  }
  if constexpr (requires { s.qh; }) {
    for (int e = 0; e < QK; ++e) {
      uint8_t& plane = o.qh[q5_plane_byte(i, e)];
      const int k = q5_plane_bit(i, e);
      if (to_plain) {
        if (e % 8 == 0) s.qh[e / 8] = 0;
        s.qh[e / 8] |= (uint8_t)(((plane >> k) & 1) << (e % 8));
      } else {
        plane |= (uint8_t)(((s.qh[e / 8] >> (e % 8)) & 1) << k);
      }
    }
  }
}

template <class S, class X>
void pack_blocks(const WeightMatrix& W, void* dst) {
  const int64_t nb = W.cols / QK;
  std::memset(dst, 0, (size_t)W.rows * W.row_stride);  // the Q5 bit planes are or-ed into
  for (int64_t g = 0; g < W.rows / kPackRows; ++g)
    for (int i = 0; i < kPackRows; ++i) {
      S* src = (S*)W.row(g * kPackRows + i);
      for (int64_t b = 0; b < nb; ++b) move_block(src[b], ((X*)dst)[g * nb + b], i, false);
    }
}

template <class S, class X>
void gather_blocks(const WeightMatrix& W, int64_t r, void* dst) {
  const int64_t nb = W.cols / QK, g = r / kPackRows;
  X* src = (X*)W.data;  // read only: to_plain never writes to it
  for (int64_t b = 0; b < nb; ++b) move_block(((S*)dst)[b], src[g * nb + b], (int)(r % kPackRows), true);
}

// Calls f.template operator()<Plain, Packed>() for W's quantized type.
template <class F>
void with_blocks(GgmlType t, F&& f) {
  switch (t) {
    case GgmlType::Q4_0: return f.template operator()<BlockQ4_0, BlockQ4_0x8>();
    case GgmlType::Q4_1: return f.template operator()<BlockQ4_1, BlockQ4_1x8>();
    case GgmlType::Q5_0: return f.template operator()<BlockQ5_0, BlockQ5_0x8>();
    case GgmlType::Q5_1: return f.template operator()<BlockQ5_1, BlockQ5_1x8>();
    case GgmlType::IQ4_NL: return f.template operator()<BlockIQ4_NL, BlockIQ4_NLx8>();
    default: return f.template operator()<BlockQ8_0, BlockQ8_0x8>();
  }
}

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
  with_blocks(W.type, [&]<class S, class X>() { pack_blocks<S, X>(W, dst); });
  return P;
}

void gather_row(const WeightMatrix& W, int64_t r, void* dst) {
  if (W.type == GgmlType::F16) {
    const fp16_t* g = (const fp16_t*)W.data + (r / kPackRows) * W.cols * kPackRows + r % kPackRows;
    for (int64_t k = 0; k < W.cols; ++k) ((fp16_t*)dst)[k] = g[k * kPackRows];
    return;
  }
  with_blocks(W.type, [&]<class S, class X>() { gather_blocks<S, X>(W, r, dst); });
}

}  // namespace kvforge
