#pragma once
// Internal interface between matmul.cpp (threading, activation quantization)
// and the per-SIMD-level kernels (matmul_ref.cpp, matmul_avx2.cpp,
// matmul_avx512.cpp, and their *_packed_* twins).
#include <cstddef>
#include <cstdint>

#include "ops/matmul.h"

namespace kvforge {

// What the activations are turned into for a kernel: f32 as they are, 8-bit
// blocks (BlockQ8A, BlockQ8K), or bf16 rounded to nearest even.
enum class ActFormat { F32, Q8A, Q8K, BF16 };
// The format the kernels of weight type t take, except the BF16-activation
// kernels below; pick_kernel (matmul.cpp) is the one place that pairs a
// kernel with its format.
ActFormat act_format(GgmlType t);
size_t act_row_bytes(ActFormat f, int64_t cols);  // bytes of one token row in that format
inline size_t act_row_bytes(GgmlType t, int64_t cols) { return act_row_bytes(act_format(t), cols); }

// Computes y[t * W.rows + r] for r in [r0, r1), t in [t0, t1). xa holds the
// activations in the kernel's format (act_format(W.type) unless said
// otherwise), one token row every xa_stride bytes.
// Each kernel must produce every (r, t) output by one fixed accumulation
// chain that does not depend on r0, r1, t0, t1 (batch invariance).
using GemmFn = void (*)(const WeightMatrix& W, const uint8_t* xa, size_t xa_stride, int64_t r0, int64_t r1,
                        int64_t t0, int64_t t1, float* y);

GemmFn gemm_kernel_ref(GgmlType t);   // scalar reference; nullptr if unsupported
GemmFn gemm_kernel_avx2(GgmlType t);  // nullptr where AVX2 has no kernel for t
GemmFn gemm_kernel_lowbit_avx2(GgmlType t);  // Q2_K/Q3_K/IQ4_XS part of gemm_kernel_avx2
// Kernels for the interleaved layout (W.interleave == kPackRows); r0 and r1
// are then multiples of kPackRows (a partial last group of F16 or BF16 is
// handed to them as a matrix of 8 rows of its own: matmul.cpp).
GemmFn gemm_kernel_packed_ref(GgmlType t);
GemmFn gemm_kernel_packed_avx2(GgmlType t);
GemmFn gemm_kernel_kpack_avx2(GgmlType t);  // Q2_K..Q6_K, IQ4_XS part of gemm_kernel_packed_avx2
GemmFn gemm_kernel_nibu_avx2(GgmlType t);   // Q4_0, Q5_0, IQ4_NL part of it (matmul_nibu_avx2.cpp)
GemmFn gemm_kernel_q8x8_avx2(GgmlType t);   // Q8_0, and IQ4_NL's prepared prefill tiles (matmul_q8x8_avx2.cpp)
GemmFn gemm_kernel_kprep_avx2(GgmlType t);  // IQ4_XS, Q3_K: prepared prefill tiles (matmul_kprep_avx2.cpp)
GemmFn gemm_kernel_f16x8_avx2(GgmlType t);  // F16, BF16 (matmul_f16x8_avx2.cpp)

// AVX-512 (F, BW, VL, DQ, VNNI) kernels; nullptr where there is none (the
// dispatch then falls back to AVX2). Call only at SimdLevel::AVX512.
namespace avx512 {
GemmFn gemm_kernel_avx512(GgmlType t);
GemmFn gemm_kernel_packed_avx512(GgmlType t);
GemmFn gemm_kernel_kpack_avx512(GgmlType t);   // Q2_K..Q6_K, IQ4_XS part of gemm_kernel_packed_avx512
GemmFn gemm_kernel_kquant_avx512(GgmlType t);  // Q4_K/Q5_K/Q6_K part of gemm_kernel_avx512
GemmFn gemm_kernel_lowbit_avx512(GgmlType t);  // Q2_K/Q3_K/IQ4_XS part of gemm_kernel_avx512
GemmFn gemm_kernel_pairs_avx512(GgmlType t);   // prefill tiles: Q8_0, Q4_0..Q5_1, IQ4_NL (matmul_pairs_avx512.cpp),
GemmFn gemm_kernel_kpairs_avx512(GgmlType t);  // and its Q2_K..Q6_K, IQ4_XS part (matmul_kpairs_avx512.cpp)
// Packed Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL and Q8_0 in tiles of two row groups
// (matmul_x16_avx512.cpp): gemm_kernel_packed_avx512's tiles for tasks of
// kX16MinTok..kX16MaxTok tokens (a server's batched decode steps); correct
// for any call.
GemmFn gemm_kernel_x16_avx512(GgmlType t);
}  // namespace avx512
using avx512::gemm_kernel_avx512;
using avx512::gemm_kernel_packed_avx512;
constexpr int64_t kX16MinTok = 2, kX16MaxTok = 16;

// BF16 weights against ActFormat::BF16 activations (rounded once per matmul),
// f32 accumulation; nullptr for any other weight type.
GemmFn gemm_kernel_bf16act_ref(GgmlType t);  // scalar reference
// vdpbf16ps (matmul_avx512bf16.cpp), plain rows and the packed BF16 layout.
// Call only at SimdLevel::AVX512 with cpu_features().avx512bf16.
namespace avx512 {
GemmFn gemm_kernel_bf16act_avx512bf16(GgmlType t);
GemmFn gemm_kernel_packed_bf16act_avx512bf16(GgmlType t);
}  // namespace avx512
using avx512::gemm_kernel_bf16act_avx512bf16;
using avx512::gemm_kernel_packed_bf16act_avx512bf16;

// The same kernel sources compiled without -mavx512* on top of SIMDe's
// portable intrinsics (backend/simd_avx512.h): linked into the unit-test
// binary only, so the AVX-512 code is tested on any x86-64 with AVX2.
namespace avx512_emu {
GemmFn gemm_kernel_avx512(GgmlType t);
GemmFn gemm_kernel_packed_avx512(GgmlType t);
GemmFn gemm_kernel_kpack_avx512(GgmlType t);
GemmFn gemm_kernel_kquant_avx512(GgmlType t);
GemmFn gemm_kernel_lowbit_avx512(GgmlType t);
GemmFn gemm_kernel_pairs_avx512(GgmlType t);
GemmFn gemm_kernel_kpairs_avx512(GgmlType t);
GemmFn gemm_kernel_x16_avx512(GgmlType t);
GemmFn gemm_kernel_bf16act_avx512bf16(GgmlType t);
GemmFn gemm_kernel_packed_bf16act_avx512bf16(GgmlType t);
}  // namespace avx512_emu

// Scalar reference dot of one weight row with one activation row.
float dot_ref(GgmlType t, const uint8_t* wrow, const uint8_t* arow, int64_t cols);

}  // namespace kvforge
