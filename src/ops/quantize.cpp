#include "ops/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu_features.h"
#include "util/error.h"

namespace kvforge {

// AVX2 versions live in quantize_avx2.cpp.
void quantize_act_q8a_avx2(const float* x, BlockQ8A* y, int64_t n);
void quantize_act_q8k_avx2(const float* x, BlockQ8K* y, int64_t n);
void quantize_row_f16_avx2(const float* x, fp16_t* y, int64_t n);
void quantize_row_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t nb);
void quantize_row_q4_0_avx2(const float* x, BlockQ4_0* y, int64_t nb);

bool quantize_row_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
      return true;
    default:
      return false;
  }
}

namespace {

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK) {
    float amax = 0;
    for (int i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int i = 0; i < QK; ++i) y[b].qs[i] = (int8_t)std::nearbyint(x[i] * id);
  }
}

// Q4_0 uses the signed extreme: d = max/-8 maps it exactly to q = 0 and
// gives the other side 7 steps (the full 16 levels get used).
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK) {
    float amax = 0, mx = 0;
    for (int i = 0; i < QK; ++i)
      if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); mx = x[i]; }
    const float d = mx / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int i = 0; i < QK / 2; ++i) {
      const int q0 = std::min(15, (int)(x[i] * id + 8.5f));
      const int q1 = std::min(15, (int)(x[i + QK / 2] * id + 8.5f));
      y[b].qs[i] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < QK; ++i) { mn = std::min(mn, x[i]); mx = std::max(mx, x[i]); }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    y[b].m = fp32_to_fp16(mn);
    for (int i = 0; i < QK / 2; ++i) {
      const int q0 = std::min(15, (int)((x[i] - mn) * id + 0.5f));
      const int q1 = std::min(15, (int)((x[i + QK / 2] - mn) * id + 0.5f));
      y[b].qs[i] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

}  // namespace

void quantize_row(GgmlType t, const float* src, void* dst, int64_t n) {
  if (simd_level() >= SimdLevel::AVX2) {  // bit-identical to the scalar code below
    switch (t) {
      case GgmlType::F16: return quantize_row_f16_avx2(src, (fp16_t*)dst, n);
      case GgmlType::Q8_0: return quantize_row_q8_0_avx2(src, (BlockQ8_0*)dst, n / QK);
      case GgmlType::Q4_0: return quantize_row_q4_0_avx2(src, (BlockQ4_0*)dst, n / QK);
      default: break;
    }
  }
  switch (t) {
    case GgmlType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case GgmlType::F16: {
      auto* o = (fp16_t*)dst;
      for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_fp16(src[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* o = (bf16_t*)dst;
      for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_bf16(src[i]);
      return;
    }
    case GgmlType::Q8_0: quantize_q8_0(src, (BlockQ8_0*)dst, n / QK); return;
    case GgmlType::Q4_0: quantize_q4_0(src, (BlockQ4_0*)dst, n / QK); return;
    case GgmlType::Q4_1: quantize_q4_1(src, (BlockQ4_1*)dst, n / QK); return;
    default: break;
  }
  throw Error("quantize_row: unsupported type");
}

void quantize_act_q8a_ref(const float* x, BlockQ8A* y, int64_t n) {
  for (int64_t b = 0; b < n / QK; ++b, x += QK) {
    float amax = 0;
    for (int i = 0; i < QK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < QK; ++i) {
      const int q = (int)std::nearbyint(x[i] * id);
      y[b].qs[i] = (int8_t)q;
      sum += q;
    }
    y[b].d = d;
    y[b].s = d * (float)sum;
  }
}

void quantize_act_q8k_ref(const float* x, BlockQ8K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float amax = 0;
    for (int i = 0; i < QK_K; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK_K; ++i) y[b].qs[i] = (int8_t)std::nearbyint(x[i] * id);
    for (int j = 0; j < QK_K / 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[16 * j + i];
      y[b].bsums[j] = (int16_t)s;
    }
    y[b].d = d;
  }
}

void quantize_act_q8a(const float* x, BlockQ8A* y, int64_t n) {
  if (simd_level() >= SimdLevel::AVX2) return quantize_act_q8a_avx2(x, y, n);
  quantize_act_q8a_ref(x, y, n);
}

void quantize_act_q8k(const float* x, BlockQ8K* y, int64_t n) {
  if (simd_level() >= SimdLevel::AVX2) return quantize_act_q8k_avx2(x, y, n);
  quantize_act_q8k_ref(x, y, n);
}

}  // namespace kvforge
