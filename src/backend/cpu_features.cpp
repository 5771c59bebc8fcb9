#include "backend/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace kvforge {

namespace {

#if defined(__x86_64__) || defined(__i386__)
// XCR0: which register states the OS saves on a context switch. A CPU may
// have AVX/AVX-512 while the OS does not enable them (then they fault).
uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
#endif

}  // namespace

// Straight from cpuid and xgetbv rather than __builtin_cpu_supports, so the
// OS check (XCR0) is explicit and the same with every compiler and libgcc.
const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
    const bool osxsave = cx & (1u << 27), avx = cx & (1u << 28);
    const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const bool os_ymm = (xcr0 & 0x6) == 0x6;     // XMM | YMM state
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!avx || !os_ymm) return c;
    c.fma = cx & (1u << 12);
    c.f16c = cx & (1u << 29);
    if (__get_cpuid_max(0, nullptr) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    c.avx2 = b & (1u << 5);
    if (os_zmm) {
      c.avx512f = b & (1u << 16);
      c.avx512dq = b & (1u << 17);
      c.avx512bw = b & (1u << 30);
      c.avx512vl = b & (1u << 31);
      c.avx512vnni = cx & (1u << 11);
      const unsigned max_sub = a;
      if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c.avx512bf16 = a & (1u << 5);
      }
    }
#endif
    return c;
  }();
  return f;
}

namespace {
// The AVX512 level runs the *_avx512.cpp files, compiled with F, BW, VL, DQ
// and VNNI (plus AVX2/FMA/F16C); BF16 is optional and checked per kernel.
SimdLevel best_level() {
  const auto& c = cpu_features();
  const bool avx2 = c.avx2 && c.fma && c.f16c;
  if (avx2 && c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq && c.avx512vnni) return SimdLevel::AVX512;
  if (avx2) return SimdLevel::AVX2;
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
