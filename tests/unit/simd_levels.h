#pragma once
// SIMD levels in tests. A test that lowers the global level (to compare a
// kernel with the scalar reference) must put it back on every exit, a failed
// ASSERT_* included, or every later test in the process silently runs at the
// lowered level: ScopedSimdLevel does that.
#include <vector>

#include "backend/cpu_features.h"

namespace kvforge {

class ScopedSimdLevel {
 public:
  explicit ScopedSimdLevel(SimdLevel level) : saved_(simd_level()) { set_simd_level(level); }
  ~ScopedSimdLevel() { set_simd_level(saved_); }
  ScopedSimdLevel(const ScopedSimdLevel&) = delete;
  ScopedSimdLevel& operator=(const ScopedSimdLevel&) = delete;

 private:
  SimdLevel saved_;
};

// Scalar and every level above it that this CPU runs: what a loop "at every
// level" must visit. (A level the CPU lacks is clamped by set_simd_level, so
// a fixed list would repeat one level and test the best one never.)
inline std::vector<SimdLevel> simd_levels() {
  SimdLevel best;
  {
    ScopedSimdLevel probe(SimdLevel::AVX512);  // clamped to the best the CPU has
    best = simd_level();
  }
  std::vector<SimdLevel> levels;
  for (int l = 0; l <= (int)best; ++l) levels.push_back((SimdLevel)l);
  return levels;
}

}  // namespace kvforge
