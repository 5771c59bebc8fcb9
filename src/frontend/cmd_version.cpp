// `kvforge sysinfo`: what this build can do on this CPU; and the global
// `--simd LEVEL`, which caps the kernels' SIMD level for any command (to
// compare an AVX-512 CPU's kernels with the AVX2 ones, which every CPU of
// the AVX2 machines runs; both give the same bits, but for BF16 weights on
// AVX512_BF16).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "frontend/command.h"

namespace kvforge::cli {
namespace {
CommandRegistrar reg(90, [](CLI::App& root) {
  static constexpr SimdLevel kLevels[] = {SimdLevel::AVX512, SimdLevel::AVX2, SimdLevel::Scalar};
  std::vector<std::string> names;  // simd_level_name's, the ones sysinfo prints
  for (SimdLevel l : kLevels) names.emplace_back(simd_level_name(l));
  auto simd = std::make_shared<std::string>();
  root.add_option("--simd", *simd,
                  "Highest SIMD level the kernels may use: avx512, avx2 or scalar (default: the best this CPU has); "
                  "before the command, e.g. kvforge --simd avx2 bench")
      ->check(CLI::IsMember(names));
  // Runs after parsing, before the command's own callback.
  root.parse_complete_callback([simd] {
    if (simd->empty()) return;
    SimdLevel want = SimdLevel::Scalar;
    for (SimdLevel l : kLevels)
      if (*simd == simd_level_name(l)) want = l;
    set_simd_level(want);
    if (simd_level() != want)
      std::fprintf(stderr, "warning: --simd %s: this CPU's best is %s, which is used\n", simd->c_str(),
                   simd_level_name(simd_level()));
  });
  auto* c = root.add_subcommand("sysinfo", "Show the SIMD level and default thread count on this machine");
  c->callback([] {
    std::printf("simd: %s\n", simd_level_name(simd_level()));
    // An optional extra at the AVX512 level, checked per kernel (ops/matmul.cpp).
    if (simd_level() >= SimdLevel::AVX512)
      std::printf("avx512bf16: %s\n", cpu_features().avx512bf16 ? "yes (BF16 weights use vdpbf16ps)" : "no");
    std::printf("threads: %d\n", default_thread_count());
  });
});
}  // namespace
}  // namespace kvforge::cli
