#pragma once
// Warnings for settings that work but surprise: more threads than CPUs, and
// positions past the context the model was trained on. They go to stderr as
// one "warning: ..." line each; the command still runs.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "model/config.h"

namespace kvforge::cli {

// Validator for -t: accepts any count >= 0, warns above this machine's CPUs.
CLI::Validator thread_count_check();

// Warns when `what` needs `positions` token positions and the model was
// trained on fewer (RoPE models run there, but their output degrades).
void warn_beyond_training(const ModelConfig& c, int64_t positions, const std::string& what);

}  // namespace kvforge::cli
