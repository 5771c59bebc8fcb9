#pragma once
// Checks of option values shared by the commands, and warnings for settings
// that work but surprise: more threads than CPUs, positions past the context
// the model was trained on, and an option that does not apply to the model.
// The warnings go to stderr as one "warning: ..." line each; the command
// still runs.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "model/config.h"

namespace kvforge::cli {

// Validator for -t: accepts any count >= 0, warns above this machine's CPUs.
CLI::Validator thread_count_check();

// Validators for numbers > 0 and >= 0 (each element of a list option). In
// place of CLI11's PositiveNumber / NonNegativeNumber, whose message for a
// value that is no number at all prints the range up to DBL_MAX in full.
CLI::Validator positive_number();
CLI::Validator non_negative_number();

// Warns when `what` needs `positions` token positions and the model was
// trained on fewer (RoPE models run there, but their output degrades).
void warn_beyond_training(const ModelConfig& c, int64_t positions, const std::string& what);

// Warns when --mla-attn asks for a non-default path on a model without
// latent (MLA) layers, where it changes nothing.
void warn_mla_attn_unused(const ModelConfig& c, const std::string& mla_attn);

}  // namespace kvforge::cli
