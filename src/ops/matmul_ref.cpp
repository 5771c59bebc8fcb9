// Scalar reference kernels: one plain dot product per (row, token), blocks in
// order, f32 accumulation of the per-block integer sums. Slow but obviously
// right; the SIMD kernels are tested against these.
#include <cmath>
#include <string>
#include <vector>

#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/error.h"

namespace kvforge {

ActFormat act_format(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::IQ4_NL:
      return ActFormat::Q8A;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::IQ4_XS:
      return ActFormat::Q8K;
    default: return ActFormat::F32;
  }
}

size_t act_row_bytes(ActFormat f, int64_t cols) {
  switch (f) {
    case ActFormat::Q8A: return (size_t)(cols / QK) * sizeof(BlockQ8A);
    case ActFormat::Q8K: return (size_t)(cols / QK_K) * sizeof(BlockQ8K);
    case ActFormat::BF16: return (size_t)cols * sizeof(bf16_t);
    default: return (size_t)cols * sizeof(float);
  }
}

namespace {

float dot_f32(const float* w, const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += w[i] * x[i];
  return s;
}
float dot_f16(const fp16_t* w, const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += fp16_to_fp32(w[i]) * x[i];
  return s;
}
float dot_bf16(const bf16_t* w, const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += bf16_to_fp32(w[i]) * x[i];
  return s;
}

// BF16 weights x bf16-rounded activations: each product is exact in f32
// (8-bit significands), summed in order.
float dot_bf16_bf16act(const bf16_t* w, const bf16_t* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += bf16_to_fp32(w[i]) * bf16_to_fp32(x[i]);
  return s;
}

// q8_0: sum_b d_w d_a sum_i q_w q_a
float dot_q8_0(const BlockQ8_0* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK; ++i) isum += w[b].qs[i] * a[b].qs[i];
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d);
  }
  return s;
}

// q4_0: weights d_w (q - 8); the -8 is folded into the integer sum.
float dot_q4_0(const BlockQ4_0* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK / 2; ++i) {
      isum += ((w[b].qs[i] & 15) - 8) * a[b].qs[i];
      isum += ((w[b].qs[i] >> 4) - 8) * a[b].qs[i + QK / 2];
    }
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d);
  }
  return s;
}

// q4_1: weights d_w q + m_w, so the dot is d_w d_a sum q_w q_a + m_w s_a.
float dot_q4_1(const BlockQ4_1* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK / 2; ++i) {
      isum += (w[b].qs[i] & 15) * a[b].qs[i];
      isum += (w[b].qs[i] >> 4) * a[b].qs[i + QK / 2];
    }
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d) + fp16_to_fp32(w[b].m) * a[b].s;
  }
  return s;
}

// Q5_0 / Q5_1: element i of a block is q5(i) (four bits as in Q4_0, the
// fifth from qh); Q5_0 weights d (q - 16), Q5_1 d q + m like Q4_1.
int q5_at(const uint8_t* qs, const uint8_t* qh, int i) {
  const int lo = i < QK / 2 ? qs[i] & 15 : qs[i - QK / 2] >> 4;
  return lo | (((qh[i / 8] >> (i % 8)) & 1) << 4);
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK; ++i) isum += (q5_at(w[b].qs, w[b].qh, i) - 16) * a[b].qs[i];
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d);
  }
  return s;
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK; ++i) isum += q5_at(w[b].qs, w[b].qh, i) * a[b].qs[i];
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d) + fp16_to_fp32(w[b].m) * a[b].s;
  }
  return s;
}

// IQ4_NL: weights d * kIq4nlValues[q], the table entries are the integers.
float dot_iq4_nl(const BlockIQ4_NL* w, const BlockQ8A* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int i = 0; i < QK / 2; ++i) {
      isum += kIq4nlValues[w[b].qs[i] & 15] * a[b].qs[i];
      isum += kIq4nlValues[w[b].qs[i] >> 4] * a[b].qs[i + QK / 2];
    }
    s += (float)isum * (fp16_to_fp32(w[b].d) * a[b].d);
  }
  return s;
}

// K-quants against Q8_K activations: the integer sums of a super-block
// (sub-block sums times their small integer scales) are exact in int32, so
// each super-block contributes d_a * (d * A - dmin * B) in f32.
float dot_q4_k(const BlockQ4_K* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0, B = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k4_scale_min(j, w[b].scales, &sc, &m);
      const uint8_t* q = w[b].qs + 32 * (j / 2);
      const int shift = (j & 1) * 4;
      int isum = 0;
      for (int l = 0; l < 32; ++l) isum += ((q[l] >> shift) & 15) * a[b].qs[32 * j + l];
      A += sc * isum;
      B += m * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    s += a[b].d * (fp16_to_fp32(w[b].d) * (float)A - fp16_to_fp32(w[b].dmin) * (float)B);
  }
  return s;
}

float dot_q5_k(const BlockQ5_K* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0, B = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k4_scale_min(j, w[b].scales, &sc, &m);
      const uint8_t* q = w[b].qs + 32 * (j / 2);
      const int shift = (j & 1) * 4;
      int isum = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 15) | (((w[b].qh[l] >> j) & 1) << 4);
        isum += v * a[b].qs[32 * j + l];
      }
      A += sc * isum;
      B += m * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    s += a[b].d * (fp16_to_fp32(w[b].d) * (float)A - fp16_to_fp32(w[b].dmin) * (float)B);
  }
  return s;
}

// Q6_K element 128h + 32g + l (g = 0..3, l = 0..31): low four bits from
// ql[64h + l + 32(g&1)] (low nibble for g < 2, high for g >= 2), top two
// bits from qh[32h + l] >> 2g; scale scales[8h + 2g + l/16].
float dot_q6_k(const BlockQ6_K* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0;
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 4; ++g)
        for (int half = 0; half < 2; ++half) {
          int isum = 0;
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const uint8_t lo = w[b].ql[64 * h + l + 32 * (g & 1)];
            const int v = ((g < 2 ? lo : lo >> 4) & 15) | (((w[b].qh[32 * h + l] >> (2 * g)) & 3) << 4);
            isum += (v - 32) * a[b].qs[128 * h + 32 * g + l];
          }
          A += w[b].scales[8 * h + 2 * g + half] * isum;
        }
    s += a[b].d * (fp16_to_fp32(w[b].d) * (float)A);
  }
  return s;
}

// Q2_K, Q3_K, IQ4_XS: the integer sums A (and B, Q2_K's mins) of a whole
// super-block are exact in int32 and each super-block adds
// d_a * (d * A - dmin * B) (Q3_K, IQ4_XS: d_a * (d * A)) in this order,
// one rounding per operation (this file is built without FMA; the SIMD
// kernels keep the compiler from fusing them): the SIMD kernels (matmul_lowbit_*.cpp) take the same steps on the
// same integers, so they give these bits exactly.
float dot_q2_k(const BlockQ2_K* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0, B = 0;
    for (int i = 0; i < QK_K; ++i) {
      const int q = (w[b].qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3;
      A += (w[b].scales[i / 16] & 15) * q * a[b].qs[i];
    }
    for (int j = 0; j < QK_K / 16; ++j) B += (w[b].scales[j] >> 4) * a[b].bsums[j];
    const float dA = fp16_to_fp32(w[b].d) * (float)A;
    const float mB = fp16_to_fp32(w[b].dmin) * (float)B;
    const float blk = a[b].d * (dA - mB);
    s += blk;
  }
  return s;
}

float dot_q3_k(const BlockQ3_K* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0;
    for (int i = 0; i < QK_K; ++i) {
      const int h = i / 128, g = (i / 32) % 4, l = i % 32;
      const int lo = (w[b].qs[32 * h + l] >> (2 * g)) & 3;
      const int q = lo - (((w[b].hmask[l] >> (4 * h + g)) & 1) ? 0 : 4);
      A += (q3k_scale(w[b].scales, i / 16) - 32) * q * a[b].qs[i];
    }
    const float blk = a[b].d * (fp16_to_fp32(w[b].d) * (float)A);
    s += blk;
  }
  return s;
}

float dot_iq4_xs(const BlockIQ4_XS* w, const BlockQ8K* a, int64_t nb) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int A = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      const uint8_t* q = w[b].qs + 16 * j;
      const int8_t* x = a[b].qs + 32 * j;
      int isum = 0;
      for (int l = 0; l < 16; ++l)
        isum += kIq4nlValues[q[l] & 15] * x[l] + kIq4nlValues[q[l] >> 4] * x[l + 16];
      A += (iq4xs_scale(w[b], j) - 32) * isum;
    }
    const float blk = a[b].d * (fp16_to_fp32(w[b].d) * (float)A);
    s += blk;
  }
  return s;
}

void gemm_ref(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t r = r0; r < r1; ++r) y[t * W.rows + r] = dot_ref(W.type, W.row(r), xa + t * xs, W.cols);
}

void gemm_bf16act_ref(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                      int64_t t1, float* y) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t r = r0; r < r1; ++r)
      y[t * W.rows + r] = dot_bf16_bf16act((const bf16_t*)W.row(r), (const bf16_t*)(xa + t * xs), W.cols);
}

// Packed layout: gather the row back into plain blocks, then the same dot.
void gemm_packed_ref(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                     int64_t t1, float* y) {
  thread_local std::vector<uint8_t> row;  // [row_stride]
  row.resize(W.row_stride);
  for (int64_t r = r0; r < r1; ++r) {
    gather_row(W, r, row.data());
    for (int64_t t = t0; t < t1; ++t) y[t * W.rows + r] = dot_ref(W.type, row.data(), xa + t * xs, W.cols);
  }
}

}  // namespace

GemmFn gemm_kernel_bf16act_ref(GgmlType t) { return t == GgmlType::BF16 ? gemm_bf16act_ref : nullptr; }

GemmFn gemm_kernel_packed_ref(GgmlType t) {
  WeightMatrix probe;
  probe.type = t;
  probe.rows = kPackRows;
  return packable(probe) ? gemm_packed_ref : nullptr;  // every type that packs (cols: checked at packing)
}

float dot_ref(GgmlType t, const uint8_t* w, const uint8_t* a, int64_t cols) {
  switch (t) {
    case GgmlType::F32: return dot_f32((const float*)w, (const float*)a, cols);
    case GgmlType::F16: return dot_f16((const fp16_t*)w, (const float*)a, cols);
    case GgmlType::BF16: return dot_bf16((const bf16_t*)w, (const float*)a, cols);
    case GgmlType::Q8_0: return dot_q8_0((const BlockQ8_0*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q4_0: return dot_q4_0((const BlockQ4_0*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q4_1: return dot_q4_1((const BlockQ4_1*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q5_0: return dot_q5_0((const BlockQ5_0*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q5_1: return dot_q5_1((const BlockQ5_1*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::IQ4_NL: return dot_iq4_nl((const BlockIQ4_NL*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q2_K: return dot_q2_k((const BlockQ2_K*)w, (const BlockQ8K*)a, cols / QK_K);
    case GgmlType::Q3_K: return dot_q3_k((const BlockQ3_K*)w, (const BlockQ8K*)a, cols / QK_K);
    case GgmlType::IQ4_XS: return dot_iq4_xs((const BlockIQ4_XS*)w, (const BlockQ8K*)a, cols / QK_K);
    case GgmlType::Q4_K: return dot_q4_k((const BlockQ4_K*)w, (const BlockQ8K*)a, cols / QK_K);
    case GgmlType::Q5_K: return dot_q5_k((const BlockQ5_K*)w, (const BlockQ8K*)a, cols / QK_K);
    case GgmlType::Q6_K: return dot_q6_k((const BlockQ6_K*)w, (const BlockQ8K*)a, cols / QK_K);
    default: break;
  }
  throw Error("matmul: unsupported weight type " + type_name((uint32_t)t));
}

GemmFn gemm_kernel_ref(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
    case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::IQ4_NL:
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::IQ4_XS:
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return gemm_ref;
    default: return nullptr;
  }
}

}  // namespace kvforge
