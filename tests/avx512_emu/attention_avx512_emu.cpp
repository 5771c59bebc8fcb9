// src/ops/attention_avx512.cpp on SIMDe's portable AVX-512 intrinsics, in namespace
// kvforge::avx512_emu (see src/backend/simd_avx512.h). Test binary only.
#define KVFORGE_AVX512_EMULATED 1
#include "ops/attention_avx512.cpp"
