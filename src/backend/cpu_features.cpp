#include "backend/cpu_features.h"

#include <algorithm>
#include <atomic>

namespace kvforge {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = __builtin_cpu_supports("f16c");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
    c.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    return c;
  }();
  return f;
}

namespace {
SimdLevel best_level() {
  const auto& c = cpu_features();
  if (c.avx512f && c.avx512bw && c.avx512vl && c.avx512vnni && c.avx2 && c.fma && c.f16c) return SimdLevel::AVX512;
  if (c.avx2 && c.fma && c.f16c) return SimdLevel::AVX2;
  return SimdLevel::Scalar;
}
std::atomic<int> g_level{-1};
}  // namespace

SimdLevel simd_level() {
  int l = g_level.load(std::memory_order_relaxed);
  if (l < 0) {
    l = (int)best_level();
    g_level.store(l, std::memory_order_relaxed);
  }
  return (SimdLevel)l;
}

void set_simd_level(SimdLevel level) {
  g_level.store(std::min((int)level, (int)best_level()), std::memory_order_relaxed);
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
  }
  return "?";
}

}  // namespace kvforge
