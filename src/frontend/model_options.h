#pragma once
// Options shared by the commands that load a model and run it, so every
// command spells -m/-c/-t/sampling flags the same way.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/context.h"
#include "model/model.h"
#include "model/sampler.h"

namespace kvforge::cli {

struct ModelOptions {
  std::string model;         // -m; empty = default model
  int32_t n_ctx = 0;         // -c
  int32_t n_batch = 256;     // -b
  int n_threads = 0;         // -t
  std::string kv_type;       // --kv-type (shorthand for the storage part of --kv)
  std::string kv = "full";   // --kv POLICY
  bool no_repack = false;    // --no-repack
  std::string mla_attn = "absorbed";  // --mla-attn (latent attention path)

  void add_to(CLI::App& app);
  std::unique_ptr<Model> load_model() const;          // resolves the default model
  ContextParams context_params() const;
};

struct SamplingOptions {
  SamplingParams params;

  void add_to(CLI::App& app);
  SamplingParams resolve() const;  // validated
};

// --mla-attn into value (ModelOptions, and commands with their own options).
void add_mla_attn_option(CLI::App& app, std::string& value);

// "1.23 KB"-style sizes for summaries.
std::string human_bytes(double bytes);

}  // namespace kvforge::cli
