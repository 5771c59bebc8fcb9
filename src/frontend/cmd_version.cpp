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
    std::printf("simd: %s\nthreads: %d\n", simd_level_name(simd_level()), default_thread_count());
  });
});
}  // namespace
}  // namespace kvforge::cli
