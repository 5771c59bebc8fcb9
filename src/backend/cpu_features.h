#pragma once
// Which SIMD kernels this CPU can run, decided once at run time so that one
// binary runs on any x86-64. A feature counts only when the OS also saves its
// registers (XCR0), so every flag here means "safe to execute".
namespace kvforge {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512dq = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
};

const CpuFeatures& cpu_features();

enum class SimdLevel { Scalar = 0, AVX2 = 1, AVX512 = 2 };

// The best level the CPU supports, unless lowered by set_simd_level() (tests
// use that to compare kernels against the scalar reference).
SimdLevel simd_level();
void set_simd_level(SimdLevel level);  // clamped to what the CPU supports
const char* simd_level_name(SimdLevel level);

}  // namespace kvforge
