#include "frontend/run_checks.h"

#include <sched.h>

#include <thread>

#include <fmt/format.h>

#include "backend/thread_pool.h"

namespace kvforge::cli {

namespace {

// The CPUs this process may run on (its affinity mask: a container or
// taskset may allow fewer than the machine has).
int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return (int)std::thread::hardware_concurrency();
}

}  // namespace

CLI::Validator thread_count_check() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        int n = 0;
        if (!CLI::detail::lexical_cast(value, n) || n < 0) return "must be a thread count >= 0 (0 = physical cores)";
        const int cpus = usable_cpus(), cores = default_thread_count();
        if (n > cpus && cpus > 0)
          fmt::print(stderr, "warning: {} threads on {} CPUs: threads will wait for each other and run slower, "
                             "not faster (the default is {}, the physical cores)\n", n, cpus, cores);
        else if (n > cores)
          fmt::print(stderr, "warning: {} threads on {} physical cores: hyper-threads share a core's arithmetic "
                             "units and memory bandwidth, which is usually slower (the default is {})\n",
                     n, cores, cores);
        return {};
      },
      "");
}

namespace {

CLI::Validator number_check(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v)) return fmt::format("'{}' is not a number", value);
        if (zero_ok ? v < 0 : v <= 0) return fmt::format("must be {} 0, not {}", zero_ok ? ">=" : ">", value);
        return {};
      },
      zero_ok ? "NONNEGATIVE" : "POSITIVE");
}

}  // namespace

CLI::Validator positive_number() { return number_check(false); }
CLI::Validator non_negative_number() { return number_check(true); }

void warn_beyond_training(const ModelConfig& c, int64_t positions, const std::string& what) {
  // Learned positions end at n_ctx_train: Context refuses those with an error.
  if (c.position == PositionKind::Learned || c.n_ctx_train <= 0 || positions <= c.n_ctx_train) return;
  fmt::print(stderr, "warning: {}: {} positions, past the {} this model was trained on; it runs, but its text "
                     "there degrades (speed measurements stay valid)\n", what, positions, c.n_ctx_train);
}

void warn_mla_attn_unused(const ModelConfig& c, const std::string& mla_attn) {
  if (mla_attn == "absorbed" || c.mla.kv_lora_rank > 0) return;
  fmt::print(stderr, "warning: --mla-attn {}: this model has no latent (MLA) layers, so the option changes nothing\n",
             mla_attn);
}

}  // namespace kvforge::cli
