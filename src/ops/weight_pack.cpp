#include "ops/weight_pack.h"

#include <cstring>

#include "ops/matmul.h"

namespace kvforge {

bool packable(const WeightMatrix& W) {
  if (W.interleave != 0 || W.rows <= 0) return false;
  switch (W.type) {  // F16, BF16: any rows (the last group padded with zero rows)
    case GgmlType::F16: return W.cols % 8 == 0;
    case GgmlType::BF16: return W.cols % 2 == 0;
    default: break;
  }
  if (W.rows % kPackRows != 0) return false;  // the block kernels write whole groups
  switch (W.type) {
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::IQ4_NL: case GgmlType::Q8_0: case GgmlType::Q2_K: case GgmlType::Q3_K:
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: case GgmlType::IQ4_XS:
      return true;
    default: return false;
  }
}

namespace {

// Copies plain block s into slot i of x8 block o (to_plain: the reverse).
// Same fields, other places: d (and m) in row order; the quants as element
// vectors (ops/weight_pack.h): Q8_0's byte 4i + e % 4 of qs[e / 4] is row
// i's element e; the nibble types' byte 4i + j of qs[m] is row i's qs byte
// 4m + j (elements 4m + j and 16 + 4m + j: E_m's and E_{m+4}'s byte 4i + j),
// and bit e / 4 of qh[4i + e % 4] its element e's fifth bit.
template <class S, class X>
void move_block(S& s, X& o, int i, bool to_plain) {
  auto mv = [&](auto& plain, auto& packed) { to_plain ? (void)(plain = packed) : (void)(packed = plain); };
  mv(s.d, o.d[i]);
  if constexpr (requires { s.m; }) mv(s.m, o.m[i]);
  constexpr int kBytes = sizeof(s.qs);  // Q8_0: 32 elements; nibbles: 16 bytes of two
  for (int e = 0; e < kBytes; ++e) mv(s.qs[e], o.qs[e / 4][4 * i + e % 4]);
  if constexpr (requires { s.qh; }) {
    for (int e = 0; e < QK; ++e) {
      uint8_t& plane = o.qh[4 * i + e % 4];
      const int k = e / 4;
      if (to_plain) {
        if (e % 8 == 0) s.qh[e / 8] = 0;
        s.qh[e / 8] |= (uint8_t)(((plane >> k) & 1) << (e % 8));
      } else {
        plane |= (uint8_t)(((s.qh[e / 8] >> (e % 8)) & 1) << k);
      }
    }
  }
}

// ---- K-quants ------------------------------------------------------------
// Byte b (0..31) of element vector c and the element it holds: row b / 4,
// element 4c + b % 4 (ops/weight_pack.h).
// Q4_K (and Q5_K): nibble of element e is (qs[32 (e / 64) + e % 32] >> 4 ((e / 32) & 1)).
template <class B4>
inline int q4k_get(const B4& B, int e) { return (B.qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) & 1))) & 15; }
template <class B4>
inline void q4k_set(B4& B, int e, int v) { B.qs[32 * (e / 64) + e % 32] |= (uint8_t)(v << (4 * ((e / 32) & 1))); }
// Q6_K element 128h + 32g + l: low four bits in ql[64h + l + 32(g & 1)]
// (high nibble for g >= 2), top two bits (qh[32h + l] >> 2g) & 3.
inline uint8_t& q6k_lo(BlockQ6_K& B, int e) { return B.ql[64 * (e / 128) + e % 32 + 32 * ((e / 32) & 1)]; }
inline int q6k_lo_shift(int e) { return ((e / 32) % 4) >= 2 ? 4 : 0; }
inline uint8_t& q6k_hi(BlockQ6_K& B, int e) { return B.qh[32 * (e / 128) + e % 32]; }
inline int q6k_hi_shift(int e) { return 2 * ((e / 32) % 4); }

// Six-bit scales and mins of a Q4_K block into its 12 bytes (the inverse of
// k4_scale_min; every bit of the 12 is used, so the bytes come back as they were).
void k4_encode(const uint8_t sc[8], const uint8_t m[8], uint8_t q[12]) {
  for (int j = 0; j < 4; ++j) {
    q[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
    q[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

// Row i of a group <-> its slot in the x8 super-block (to_plain: the reverse).
// Q4_K and Q5_K share everything but Q5_K's fifth bits (qh[l] >> j) & 1 of
// element 32j + l.
template <class S, class X>
void move_block(S& s, X& o, int i, bool to_plain) requires requires { s.dmin; } {
  if (to_plain) {
    s.d = o.d[i];
    s.dmin = o.dmin[i];
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = o.sc[j][i];
      m[j] = o.mn[j / 2][i][j % 2];
    }
    k4_encode(sc, m, s.scales);
    std::memset(s.qs, 0, sizeof(s.qs));
    if constexpr (requires { s.qh; }) std::memset(s.qh, 0, sizeof(s.qh));
  } else {
    o.d[i] = s.d;
    o.dmin[i] = s.dmin;
    for (int j = 0; j < 8; ++j) k4_scale_min(j, s.scales, &o.sc[j][i], &o.mn[j / 2][i][j % 2]);
  }
  for (int e = 0; e < QK_K; ++e) {
    const int c = e / 4, b = 4 * i + e % 4;
    uint8_t& byte = o.qs[c % 32][b];
    const int shift = 4 * (c / 32);
    if (to_plain) q4k_set(s, e, (byte >> shift) & 15);
    else byte |= (uint8_t)(q4k_get(s, e) << shift);
    if constexpr (requires { s.qh; }) {
      uint8_t& plane = o.qh[c % 8][b];
      const int k = c / 8, j = e / 32, l = e % 32;
      if (to_plain) s.qh[l] |= (uint8_t)(((plane >> k) & 1) << j);
      else plane |= (uint8_t)(((s.qh[l] >> j) & 1) << k);
    }
  }
}

void move_block(BlockQ6_K& s, BlockQ6_Kx8& o, int i, bool to_plain) {
  if (to_plain) {
    s.d = o.d[i];
    for (int j = 0; j < 16; ++j) s.scales[j] = o.sc[j / 2][i][j % 2];
    std::memset(s.ql, 0, sizeof(s.ql));
    std::memset(s.qh, 0, sizeof(s.qh));
  } else {
    o.d[i] = s.d;
    for (int j = 0; j < 16; ++j) o.sc[j / 2][i][j % 2] = s.scales[j];
  }
  for (int e = 0; e < QK_K; ++e) {
    const int c = e / 4, b = 4 * i + e % 4;
    uint8_t& lo = o.ql[c % 32][b];
    uint8_t& hi = o.qh[c % 16][b];
    const int lsh = 4 * (c / 32), hsh = 2 * (c / 16);
    if (to_plain) {
      q6k_lo(s, e) |= (uint8_t)(((lo >> lsh) & 15) << q6k_lo_shift(e));
      q6k_hi(s, e) |= (uint8_t)(((hi >> hsh) & 3) << q6k_hi_shift(e));
    } else {
      lo |= (uint8_t)(((q6k_lo(s, e) >> q6k_lo_shift(e)) & 15) << lsh);
      hi |= (uint8_t)(((q6k_hi(s, e) >> q6k_hi_shift(e)) & 3) << hsh);
    }
  }
}


// Q3_K: scale s (0..15, stored +32) has its low four bits in nibble s / 8 of
// scales[s % 8], its top two at bits 2 (s / 4) of scales[8 + s % 4] (the
// inverse of q3k_scale; all 96 bits are used, so bytes come back as they were).
void q3k_encode(const int v[16], uint8_t q[12]) {
  std::memset(q, 0, 12);
  for (int s = 0; s < 16; ++s) {
    q[s % 8] |= (uint8_t)((v[s] & 15) << (4 * (s / 8)));
    q[8 + s % 4] |= (uint8_t)(((v[s] >> 4) & 3) << (2 * (s / 4)));
  }
}

// Q3_K element 128h + 32g + l: low two bits (qs[32h + l] >> 2g) & 3, high
// bit (hmask[l] >> (4h + g)) & 1.
void move_block(BlockQ3_K& s, BlockQ3_Kx8& o, int i, bool to_plain) {
  if (to_plain) {
    s.d = o.d[i];
    int v[16];
    for (int j = 0; j < 16; ++j) v[j] = o.sc[j / 2][i][j % 2] + 32;
    q3k_encode(v, s.scales);
    std::memset(s.qs, 0, sizeof(s.qs));
    std::memset(s.hmask, 0, sizeof(s.hmask));
  } else {
    o.d[i] = s.d;
    for (int j = 0; j < 16; ++j) o.sc[j / 2][i][j % 2] = (int8_t)(q3k_scale(s.scales, j) - 32);
  }
  for (int e = 0; e < QK_K; ++e) {
    const int c = e / 4, b = 4 * i + e % 4;
    const int h = e / 128, g = (e / 32) % 4, l = e % 32;
    uint8_t& lo = o.ql[c % 16][b];
    uint8_t& hi = o.qh[c % 8][b];
    const int lsh = 2 * (c / 16), hsh = c / 8;
    if (to_plain) {
      s.qs[32 * h + l] |= (uint8_t)(((lo >> lsh) & 3) << (2 * g));
      s.hmask[l] |= (uint8_t)(((hi >> hsh) & 1) << (4 * h + g));
    } else {
      lo |= (uint8_t)(((s.qs[32 * h + l] >> (2 * g)) & 3) << lsh);
      hi |= (uint8_t)(((s.hmask[l] >> (4 * h + g)) & 1) << hsh);
    }
  }
}

// Q2_K element 128h + 32g + l: (qs[32h + l] >> 2g) & 3 (ggml_types.h); the
// scale bytes (scale | min << 4) move unchanged.
void move_block(BlockQ2_K& s, BlockQ2_Kx8& o, int i, bool to_plain) {
  if (to_plain) {
    s.d = o.d[i];
    s.dmin = o.dmin[i];
    for (int j = 0; j < 16; ++j) s.scales[j] = o.sc[j / 2][i][j % 2];
    std::memset(s.qs, 0, sizeof(s.qs));
  } else {
    o.d[i] = s.d;
    o.dmin[i] = s.dmin;
    for (int j = 0; j < 16; ++j) o.sc[j / 2][i][j % 2] = s.scales[j];
  }
  for (int e = 0; e < QK_K; ++e) {
    const int c = e / 4, b = 4 * i + e % 4;
    uint8_t& q = o.qs[c % 16][b];
    uint8_t& p = s.qs[32 * (e / 128) + e % 32];
    const int sh = 2 * ((e / 32) % 4), xsh = 2 * (c / 16);
    if (to_plain) p |= (uint8_t)(((q >> xsh) & 3) << sh);
    else q |= (uint8_t)(((p >> sh) & 3) << xsh);
  }
}

// IQ4_XS element 32j + l: nibble l / 16 of qs[16j + l % 16]; scale j stored
// +32 in scales_l (low four bits) and scales_h (top two). All 48 scale bits
// are used, so the bytes come back as they were.
void move_block(BlockIQ4_XS& s, BlockIQ4_XSx8& o, int i, bool to_plain) {
  if (to_plain) {
    s.d = o.d[i];
    s.scales_h = 0;
    std::memset(s.scales_l, 0, sizeof(s.scales_l));
    for (int j = 0; j < 8; ++j) {
      const int v = o.sc[j / 2][i][j % 2] + 32;
      s.scales_l[j / 2] |= (uint8_t)((v & 15) << (4 * (j % 2)));
      s.scales_h |= (uint16_t)(((v >> 4) & 3) << (2 * j));
    }
    std::memset(s.qs, 0, sizeof(s.qs));
  } else {
    o.d[i] = s.d;
    for (int j = 0; j < 8; ++j) o.sc[j / 2][i][j % 2] = (int8_t)(iq4xs_scale(s, j) - 32);
  }
  for (int e = 0; e < QK_K; ++e) {
    const int c = e / 4, b = 4 * i + e % 4;
    uint8_t& q = o.qs[c % 32][b];
    uint8_t& p = s.qs[16 * (e / 32) + e % 16];
    const int sh = 4 * ((e % 32) / 16), xsh = 4 * (c / 32);
    if (to_plain) p |= (uint8_t)(((q >> xsh) & 15) << sh);
    else q |= (uint8_t)(((p >> sh) & 15) << xsh);
  }
}

// Row r of the F16 and BF16 layouts (ops/weight_pack.h): F16 [rows/64][cols][64],
// BF16 [rows/64][cols/2][64][2]. Both hold columns 2j and 2j + 1 of a block
// in the 2 x kRows16 words from 2j x kRows16 on; row r's are at `at`
// and `at + odd` there. Copies the row out of the layout (kToPlain) or into it.
template <bool kToPlain>
void move_row16(const WeightMatrix& W, int64_t r, uint16_t* packed, uint16_t* plain) {
  const bool bf16 = W.type == GgmlType::BF16;
  const size_t at = group16_offset(W.cols, r, bf16);  // also right for r % 8 != 0
  const size_t odd = bf16 ? 1 : kRows16;
  for (int64_t k = 0; k < W.cols; k += 2) {  // cols is even (packable)
    uint16_t* p = packed + at + (size_t)k * kRows16;
    if constexpr (kToPlain) plain[k] = p[0], plain[k + 1] = p[odd];
    else p[0] = plain[k], p[odd] = plain[k + 1];
  }
}

template <class S>
constexpr int64_t kElems = sizeof(S) >= 64 ? QK_K : QK;  // K-quant super-blocks: 84..210 bytes; the rest <= 34

template <class S, class X>
void pack_blocks(const WeightMatrix& W, void* dst) {
  const int64_t nb = W.cols / kElems<S>;
  std::memset(dst, 0, packed_bytes(W));  // the Q5 bit planes and K-quant nibbles are or-ed into
  for (int64_t g = 0; g < W.rows / kPackRows; ++g)
    for (int i = 0; i < kPackRows; ++i) {
      S* src = (S*)W.row(g * kPackRows + i);
      for (int64_t b = 0; b < nb; ++b) move_block(src[b], ((X*)dst)[g * nb + b], i, false);
    }
}

template <class S, class X>
void gather_blocks(const WeightMatrix& W, int64_t r, void* dst) {
  const int64_t nb = W.cols / kElems<S>, g = r / kPackRows;
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
    case GgmlType::Q2_K: return f.template operator()<BlockQ2_K, BlockQ2_Kx8>();
    case GgmlType::Q3_K: return f.template operator()<BlockQ3_K, BlockQ3_Kx8>();
    case GgmlType::Q4_K: return f.template operator()<BlockQ4_K, BlockQ4_Kx8>();
    case GgmlType::Q5_K: return f.template operator()<BlockQ5_K, BlockQ5_Kx8>();
    case GgmlType::Q6_K: return f.template operator()<BlockQ6_K, BlockQ6_Kx8>();
    case GgmlType::IQ4_XS: return f.template operator()<BlockIQ4_XS, BlockIQ4_XSx8>();
    default: return f.template operator()<BlockQ8_0, BlockQ8_0x8>();
  }
}

}  // namespace

size_t packed_bytes(const WeightMatrix& W) {
  const size_t plain = (size_t)W.rows * W.row_stride;
  if (packs_in_blocks16(W.type))  // whole blocks
    return (size_t)((W.rows + kRows16 - 1) / kRows16 * kRows16) * W.row_stride;
  size_t n = 0;
  with_blocks(W.type, [&]<class S, class X>() { n = plain / (kPackRows * sizeof(S)) * sizeof(X); });
  return n;
}

WeightMatrix pack_matrix(const WeightMatrix& W, void* dst) {
  WeightMatrix P = W;
  P.data = dst;
  P.interleave = kPackRows;
  if (packs_in_blocks16(W.type)) {  // 16-bit elements to their places
    std::memset(dst, 0, packed_bytes(W));  // the last block's missing rows: zeros
    for (int64_t r = 0; r < W.rows; ++r) move_row16<false>(W, r, (uint16_t*)dst, (uint16_t*)W.row(r));
    return P;
  }
  with_blocks(W.type, [&]<class S, class X>() { pack_blocks<S, X>(W, dst); });
  return P;
}

void gather_row(const WeightMatrix& W, int64_t r, void* dst) {
  if (packs_in_blocks16(W.type)) {
    // read only: kToPlain never writes to the packed side
    move_row16<true>(W, r, (uint16_t*)W.data, (uint16_t*)dst);
    return;
  }
  with_blocks(W.type, [&]<class S, class X>() { gather_blocks<S, X>(W, r, dst); });
}

WeightMatrix packed_group16(const WeightMatrix& W, int64_t r) {
  WeightMatrix G = W;
  G.rows = kPackRows;
  G.data = (const uint16_t*)W.data + group16_offset(W.cols, r, W.type == GgmlType::BF16);
  return G;
}

}  // namespace kvforge
