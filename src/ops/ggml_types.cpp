// Type table for every GGUF tensor type id, and scalar reference
// dequantization for the types this engine reads. These loops define the
// numbers every fast kernel must reproduce, so they are written for clarity
// and for the exact float32 operation order of the format's reference:
// (d * scale) * q - (dmin * min), never fused into an FMA (this file is built
// for baseline x86-64, which has no FMA, and GCC's ISO mode does not contract).
#include "ops/ggml_types.h"

#include <array>
#include <cstring>

#include "util/error.h"

namespace kvforge {

namespace {

constexpr uint32_t kMaxTypeId = 41;

// Sizes are part of the file format; names follow the usual GGUF spelling.
constexpr std::array<TypeTraits, kMaxTypeId + 1> make_table() {
  std::array<TypeTraits, kMaxTypeId + 1> t{};
  for (auto& e : t) e = {nullptr, 0, 0, false};
  t[0] = {"F32", 1, 4, true};
  t[1] = {"F16", 1, 2, true};
  t[2] = {"Q4_0", 32, 18, true};
  t[3] = {"Q4_1", 32, 20, true};
  // 4 and 5 were Q4_2 / Q4_3, removed from the format long ago.
  t[6] = {"Q5_0", 32, 22, true};
  t[7] = {"Q5_1", 32, 24, true};
  t[8] = {"Q8_0", 32, 34, true};
  t[9] = {"Q8_1", 32, 36, false};
  t[10] = {"Q2_K", 256, 84, true};
  t[11] = {"Q3_K", 256, 110, true};
  t[12] = {"Q4_K", 256, 144, true};
  t[13] = {"Q5_K", 256, 176, true};
  t[14] = {"Q6_K", 256, 210, true};
  t[15] = {"Q8_K", 256, 292, false};
  t[16] = {"IQ2_XXS", 256, 66, false};
  t[17] = {"IQ2_XS", 256, 74, false};
  t[18] = {"IQ3_XXS", 256, 98, false};
  t[19] = {"IQ1_S", 256, 50, false};
  t[20] = {"IQ4_NL", 32, 18, true};
  t[21] = {"IQ3_S", 256, 110, false};
  t[22] = {"IQ2_S", 256, 82, false};
  t[23] = {"IQ4_XS", 256, 136, true};
  t[24] = {"I8", 1, 1, false};
  t[25] = {"I16", 1, 2, false};
  t[26] = {"I32", 1, 4, false};
  t[27] = {"I64", 1, 8, false};
  t[28] = {"F64", 1, 8, false};
  t[29] = {"IQ1_M", 256, 56, false};
  t[30] = {"BF16", 1, 2, true};
  // 31-33 and 36-38 were interleaved repacks that never belong in files.
  t[34] = {"TQ1_0", 256, 54, false};
  t[35] = {"TQ2_0", 256, 66, false};
  t[39] = {"MXFP4", 32, 17, false};
  t[40] = {"NVFP4", 64, 36, false};
  t[41] = {"Q1_0", 128, 18, false};
  return t;
}

constexpr auto kTable = make_table();

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void deq_q4_0(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ4_0), y += QK) {
    BlockQ4_0 blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int l = 0; l < QK / 2; ++l) {
      y[l] = d * (float)((blk.qs[l] & 0xF) - 8);
      y[l + QK / 2] = d * (float)((blk.qs[l] >> 4) - 8);
    }
  }
}

void deq_q4_1(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ4_1), y += QK) {
    BlockQ4_1 blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d), m = fp16_to_fp32(blk.m);
    for (int l = 0; l < QK / 2; ++l) {
      y[l] = d * (float)(blk.qs[l] & 0xF) + m;
      y[l + QK / 2] = d * (float)(blk.qs[l] >> 4) + m;
    }
  }
}

// Q5_0 / Q5_1: the four low bits as in Q4_0, the fifth from qh.
inline int q5_value(const uint8_t* qs, const uint8_t* qh, int i) {
  const int lo = i < QK / 2 ? qs[i] & 0xF : qs[i - QK / 2] >> 4;
  return lo | (((qh[i / 8] >> (i % 8)) & 1) << 4);
}

void deq_q5_0(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ5_0), y += QK) {
    BlockQ5_0 blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int i = 0; i < QK; ++i) y[i] = d * (float)(q5_value(blk.qs, blk.qh, i) - 16);
  }
}

void deq_q5_1(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ5_1), y += QK) {
    BlockQ5_1 blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d), m = fp16_to_fp32(blk.m);
    for (int i = 0; i < QK; ++i) y[i] = d * (float)q5_value(blk.qs, blk.qh, i) + m;
  }
}

void deq_iq4_nl(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockIQ4_NL), y += QK) {
    BlockIQ4_NL blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int l = 0; l < QK / 2; ++l) {
      y[l] = d * (float)kIq4nlValues[blk.qs[l] & 0xF];
      y[l + QK / 2] = d * (float)kIq4nlValues[blk.qs[l] >> 4];
    }
  }
}

void deq_q2_k(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ2_K), y += QK_K) {
    BlockQ2_K blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d), dmin = fp16_to_fp32(blk.dmin);
    for (int i = 0; i < QK_K; ++i) {
      const int h = i / 128, g = (i / 32) % 4, l = i % 32;
      const uint8_t sc = blk.scales[i / 16];
      const int q = (blk.qs[32 * h + l] >> (2 * g)) & 3;
      y[i] = (d * (float)(sc & 0xF)) * (float)q - dmin * (float)(sc >> 4);
    }
  }
}

void deq_q3_k(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ3_K), y += QK_K) {
    BlockQ3_K blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int i = 0; i < QK_K; ++i) {
      const int h = i / 128, g = (i / 32) % 4, l = i % 32;
      const int lo = (blk.qs[32 * h + l] >> (2 * g)) & 3;
      const int q = lo - (((blk.hmask[l] >> (4 * h + g)) & 1) ? 0 : 4);
      y[i] = (d * (float)(q3k_scale(blk.scales, i / 16) - 32)) * (float)q;
    }
  }
}

void deq_iq4_xs(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockIQ4_XS)) {
    BlockIQ4_XS blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int j = 0; j < QK_K / 32; ++j, y += 32) {
      const float dl = d * (float)(iq4xs_scale(blk, j) - 32);
      const uint8_t* q = blk.qs + 16 * j;
      for (int l = 0; l < 16; ++l) {
        y[l] = dl * (float)kIq4nlValues[q[l] & 0xF];
        y[l + 16] = dl * (float)kIq4nlValues[q[l] >> 4];
      }
    }
  }
}

void deq_q8_0(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ8_0), y += QK) {
    BlockQ8_0 blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    for (int l = 0; l < QK; ++l) y[l] = d * (float)blk.qs[l];
  }
}

void deq_q4_k(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ4_K)) {
    BlockQ4_K blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d), dmin = fp16_to_fp32(blk.dmin);
    const uint8_t* q = blk.qs;
    for (int j = 0; j < 8; j += 2, q += 32) {  // 64 elements per pass
      uint8_t sc, m;
      k4_scale_min(j, blk.scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      k4_scale_min(j + 1, blk.scales, &sc, &m);
      const float d2 = d * (float)sc, m2 = dmin * (float)m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (float)(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
  }
}

void deq_q5_k(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ5_K)) {
    BlockQ5_K blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d), dmin = fp16_to_fp32(blk.dmin);
    const uint8_t* q = blk.qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t sc, m;
      k4_scale_min(j, blk.scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      k4_scale_min(j + 1, blk.scales, &sc, &m);
      const float d2 = d * (float)sc, m2 = dmin * (float)m;
      const uint8_t u1 = (uint8_t)(1u << j), u2 = (uint8_t)(2u << j);
      for (int l = 0; l < 32; ++l)
        *y++ = d1 * (float)((q[l] & 0xF) + ((blk.qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l)
        *y++ = d2 * (float)((q[l] >> 4) + ((blk.qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

void deq_q6_k(const uint8_t* src, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += sizeof(BlockQ6_K)) {
    BlockQ6_K blk;
    std::memcpy(&blk, src, sizeof blk);
    const float d = fp16_to_fp32(blk.d);
    const uint8_t* ql = blk.ql;
    const uint8_t* qh = blk.qh;
    const int8_t* sc = blk.scales;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int l = 0; l < 32; ++l) {
        const int s = l / 16;
        const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = (d * (float)sc[s + 0]) * (float)q1;
        y[l + 32] = (d * (float)sc[s + 2]) * (float)q2;
        y[l + 64] = (d * (float)sc[s + 4]) * (float)q3;
        y[l + 96] = (d * (float)sc[s + 6]) * (float)q4;
      }
    }
  }
}

}  // namespace

const TypeTraits* type_traits(uint32_t type_id) {
  if (type_id > kMaxTypeId || kTable[type_id].name == nullptr) return nullptr;
  return &kTable[type_id];
}

const TypeTraits& type_traits(GgmlType t) {
  const TypeTraits* tr = type_traits((uint32_t)t);
  if (!tr) fail("unknown tensor type id {}", (uint32_t)t);
  return *tr;
}

std::string type_name(uint32_t type_id) {
  const TypeTraits* tr = type_traits(type_id);
  return tr ? tr->name : "type#" + std::to_string(type_id);
}

bool type_supported(uint32_t type_id) {
  const TypeTraits* tr = type_traits(type_id);
  return tr && tr->supported;
}

size_t row_bytes(GgmlType t, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  if (n < 0 || n % tr.block_size != 0)
    fail("{} elements is not a multiple of the {} block size {}", n, tr.name, tr.block_size);
  return (size_t)(n / tr.block_size) * tr.block_bytes;
}

void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  if (!tr.supported) fail("cannot dequantize tensor type {}", tr.name);
  if (n < 0 || n % tr.block_size != 0)
    fail("{} elements is not a multiple of the {} block size {}", n, tr.name, tr.block_size);
  const auto* s = static_cast<const uint8_t*>(src);
  const int64_t nb = n / tr.block_size;
  switch (t) {
    case GgmlType::F32:
      std::memcpy(dst, s, (size_t)n * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(s + 2 * i));
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(s + 2 * i));
      return;
    case GgmlType::Q4_0: return deq_q4_0(s, dst, nb);
    case GgmlType::Q4_1: return deq_q4_1(s, dst, nb);
    case GgmlType::Q5_0: return deq_q5_0(s, dst, nb);
    case GgmlType::Q5_1: return deq_q5_1(s, dst, nb);
    case GgmlType::IQ4_NL: return deq_iq4_nl(s, dst, nb);
    case GgmlType::Q8_0: return deq_q8_0(s, dst, nb);
    case GgmlType::Q2_K: return deq_q2_k(s, dst, nb);
    case GgmlType::Q3_K: return deq_q3_k(s, dst, nb);
    case GgmlType::IQ4_XS: return deq_iq4_xs(s, dst, nb);
    case GgmlType::Q4_K: return deq_q4_k(s, dst, nb);
    case GgmlType::Q5_K: return deq_q5_k(s, dst, nb);
    case GgmlType::Q6_K: return deq_q6_k(s, dst, nb);
    default: fail("cannot dequantize tensor type {}", tr.name);
  }
}

}  // namespace kvforge
