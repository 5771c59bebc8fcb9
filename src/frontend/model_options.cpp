#include "frontend/model_options.h"

#include <fmt/format.h>

#include "frontend/run_checks.h"
#include "util/model_store.h"

namespace kvforge::cli {

void ModelOptions::add_to(CLI::App& app) {
  app.add_option("-m,--model", model, "GGUF model file (default: the SmolLM2-135M-Instruct Q4_1 model, pulled on first use)");
  app.add_option("-c,--ctx-size", n_ctx, "KV-cache capacity in tokens (default: min(model context, 4096))")
      ->check(non_negative_number());
  app.add_option("-b,--batch-size", n_batch, "Tokens per forward pass while prefilling")
      ->check(positive_number())->capture_default_str();
  app.add_option("-t,--threads", n_threads, "Threads (default: physical cores)")->check(thread_count_check());
  app.add_flag("--no-repack", no_repack, "Keep the file's weight layout instead of the interleaved one (A/B measurements)");
  app.add_option("--kv", kv, "KV-cache policy: full, window:W[,sinks:S], heads:..., gates:FILE, h2o:B, snapkv:B, f16/f32/q8/q4[,hadamard], combined with +, e.g. window:1024,sinks:4+q8 (see README: KV-cache policies)")
      ->capture_default_str();
  add_mla_attn_option(app, mla_attn);
  app.add_option("--kv-type", kv_type, "KV-cache storage precision (f16, f32, q8, q4); overrides the storage part of --kv");
}

std::unique_ptr<Model> ModelOptions::load_model() const {
  Model::LoadOptions lo;
  lo.repack = !no_repack;
  auto m = Model::load(resolve_model_path(model), lo);
  warn_beyond_training(m->config(), n_ctx, fmt::format("-c {}", n_ctx));
  warn_mla_attn_unused(m->config(), mla_attn);
  return m;
}

ContextParams ModelOptions::context_params() const {
  ContextParams p;
  p.n_ctx = n_ctx;
  p.n_batch = n_batch;
  p.n_threads = n_threads;
  p.kv = parse_kv_policy(kv);
  if (!kv_type.empty()) p.kv.storage = parse_kv_storage(kv_type);
  p.mla_attn = parse_mla_attn(mla_attn);
  return p;
}

void add_mla_attn_option(CLI::App& app, std::string& value) {
  app.add_option("--mla-attn", value,
                 "Latent (MLA) attention: absorbed (default), naive (K/V decompressed per head; both exact across "
                 "batch splits), or auto (naive for long prefill batches: faster, but logits then depend on the "
                 "batch split)")
      ->check(CLI::IsMember({"absorbed", "naive", "auto"}))
      ->capture_default_str();
}

void SamplingOptions::add_to(CLI::App& app) {
  app.add_option("--temp", params.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  app.add_option("--top-k", params.top_k, "Keep the K most likely tokens; 0 = off")->capture_default_str();
  app.add_option("--top-p", params.top_p, "Nucleus sampling threshold; 1 = off")->capture_default_str();
  app.add_option("--min-p", params.min_p, "Drop tokens below min-p times the top probability; 0 = off")
      ->capture_default_str();
  app.add_option("--repeat-penalty", params.repeat_penalty, "Penalty for recently seen tokens; 1 = off")
      ->capture_default_str();
  app.add_option("--repeat-last-n", params.repeat_last_n, "How many recent tokens the penalty looks at")
      ->capture_default_str();
  app.add_option("--seed", params.seed, "Random seed; the same seed gives the same text")->capture_default_str();
}

SamplingParams SamplingOptions::resolve() const {
  params.validate();
  return params;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) { b /= 1024; ++u; }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

}  // namespace kvforge::cli
