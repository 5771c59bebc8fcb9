// `kvforge info`: what this build can do on this CPU.
#include <cstdio>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "frontend/command.h"

namespace kvforge::cli {
namespace {
CommandRegistrar reg(90, [](CLI::App& root) {
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
