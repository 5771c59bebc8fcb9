// Scalar reference kernels: one plain dot product per (row, token), blocks in
// order, f32 accumulation of the per-block integer sums. Slow but obviously
// right; the SIMD kernels are tested against these.
#include <cmath>
#include <string>

#include "ops/matmul_kernels.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

ActFormat act_format(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1: return ActFormat::Q8A;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: return ActFormat::Q8K;
    default: return ActFormat::F32;
  }
}

size_t act_row_bytes(GgmlType t, int64_t cols) {
  switch (act_format(t)) {
    case ActFormat::Q8A: return (size_t)(cols / QK) * sizeof(BlockQ8A);
    case ActFormat::Q8K: return (size_t)(cols / QK_K) * sizeof(BlockQ8K);
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

void gemm_ref(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
              float* y) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t r = r0; r < r1; ++r) y[t * W.rows + r] = dot_ref(W.type, W.row(r), xa + t * xs, W.cols);
}

}  // namespace

float dot_ref(GgmlType t, const uint8_t* w, const uint8_t* a, int64_t cols) {
  switch (t) {
    case GgmlType::F32: return dot_f32((const float*)w, (const float*)a, cols);
    case GgmlType::F16: return dot_f16((const fp16_t*)w, (const float*)a, cols);
    case GgmlType::BF16: return dot_bf16((const bf16_t*)w, (const float*)a, cols);
    case GgmlType::Q8_0: return dot_q8_0((const BlockQ8_0*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q4_0: return dot_q4_0((const BlockQ4_0*)w, (const BlockQ8A*)a, cols / QK);
    case GgmlType::Q4_1: return dot_q4_1((const BlockQ4_1*)w, (const BlockQ8A*)a, cols / QK);
    default: break;
  }
  throw Error("matmul: unsupported weight type " + std::to_string((int)t));
}

GemmFn gemm_kernel_ref(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
      return gemm_ref;
    default: return nullptr;
  }
}

void dequant_row_ref(GgmlType t, const uint8_t* src, float* dst, int64_t n) {
  switch (t) {
    case GgmlType::F32:
      for (int64_t i = 0; i < n; ++i) dst[i] = ((const float*)src)[i];
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(((const fp16_t*)src)[i]);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(((const bf16_t*)src)[i]);
      return;
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < n / QK; ++b) {
        const auto& B = ((const BlockQ8_0*)src)[b];
        const float d = fp16_to_fp32(B.d);
        for (int i = 0; i < QK; ++i) dst[b * QK + i] = d * B.qs[i];
      }
      return;
    case GgmlType::Q4_0:
      for (int64_t b = 0; b < n / QK; ++b) {
        const auto& B = ((const BlockQ4_0*)src)[b];
        const float d = fp16_to_fp32(B.d);
        for (int i = 0; i < QK / 2; ++i) {
          dst[b * QK + i] = d * ((B.qs[i] & 15) - 8);
          dst[b * QK + i + QK / 2] = d * ((B.qs[i] >> 4) - 8);
        }
      }
      return;
    case GgmlType::Q4_1:
      for (int64_t b = 0; b < n / QK; ++b) {
        const auto& B = ((const BlockQ4_1*)src)[b];
        const float d = fp16_to_fp32(B.d), m = fp16_to_fp32(B.m);
        for (int i = 0; i < QK / 2; ++i) {
          dst[b * QK + i] = d * (B.qs[i] & 15) + m;
          dst[b * QK + i + QK / 2] = d * (B.qs[i] >> 4) + m;
        }
      }
      return;
    default: break;
  }
  throw Error("get_row: unsupported weight type " + std::to_string((int)t));
}

}  // namespace kvforge
