// `kvforge eval needle`: passkey retrieval accuracy per (length, depth) for
// one KV policy (see eval/needle.h). stdout: the table; stderr: progress.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/list_options.h"
#include "eval/needle.h"
#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

struct NeedleOptions {
  ModelOptions model;
  std::string lengths = "512";
  std::string depths = "0.1,0.5,0.9";
  int32_t trials = 5;
  uint64_t seed = 42;
  int32_t n_predict = 12;
  bool no_chat = false;
  std::string json_out;
};

nlohmann::json needle_json(const NeedleResult& r, const NeedleParams& p, const std::string& kv) {
  nlohmann::json cells = nlohmann::json::array(), trials = nlohmann::json::array();
  for (const auto& c : r.cells)
    cells.push_back({{"length", c.length}, {"depth", c.depth}, {"correct", c.correct}, {"total", c.total},
                     {"accuracy", c.accuracy()}});
  for (const auto& t : r.trials)
    trials.push_back({{"length", t.length}, {"n_prompt", t.n_prompt}, {"depth", t.depth}, {"trial", t.trial},
                      {"key", t.key}, {"answer", t.answer}, {"correct", t.correct}});
  return {{"kv", kv},         {"seed", p.seed},       {"trials_per_cell", p.trials}, {"lengths", p.lengths},
          {"depths", p.depths}, {"accuracy", r.accuracy()}, {"correct", r.correct},      {"total", r.total},
          {"cells", cells},   {"trials", trials},     {"seconds", r.seconds}};
}

void run(const NeedleOptions& o) {
  NeedleParams p;
  p.lengths = parse_int_list(o.lengths, "--lengths", 16);
  p.depths = parse_fraction_list(o.depths, "--depths");
  p.trials = o.trials;
  p.seed = o.seed;
  p.n_predict = o.n_predict;
  auto model = o.model.load_model();
  warn_beyond_training(model->config(), *std::max_element(p.lengths.begin(), p.lengths.end()) + p.n_predict,
                       "--lengths");
  const ContextParams cp = o.model.context_params();
  std::fprintf(stderr, "[kvforge] needle retrieval: lengths %s, depths %s, %d trials each, seed %llu, KV %s\n",
               o.lengths.c_str(), o.depths.c_str(), p.trials, (unsigned long long)p.seed, cp.kv.describe().c_str());
  const auto t0 = std::chrono::steady_clock::now();
  const int32_t total = (int32_t)(p.lengths.size() * p.depths.size()) * p.trials;
  ProgressBar bar("needle", total);
  int32_t ok = 0;
  const NeedleResult r = run_needle(*model, cp, p, !o.no_chat, [&](int32_t done, int32_t, const NeedleTrial& t) {
    ok += t.correct;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.update(done, s, fmt::format("{}/{} correct", ok, done));
  });
  bar.finish();
  std::printf("needle retrieval, KV %s, %d trials per cell, seed %llu\n\n%s", cp.kv.describe().c_str(), p.trials,
              (unsigned long long)p.seed, needle_table(r, p).c_str());
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    if (!out) fail("cannot write '{}'", o.json_out);
    out << needle_json(r, p, cp.kv.describe()).dump(2) << "\n";
  }
}

CommandRegistrar reg(55, [](CLI::App& root) {
  auto* ev = root.add_subcommand("eval", "Evaluations: needle retrieval, the verifiable task suite");
  ev->require_subcommand(1);
  auto o = std::make_shared<NeedleOptions>();
  auto* c = ev->add_subcommand("needle", "Passkey retrieval accuracy per context length and needle depth");
  o->model.add_to(*c);
  c->add_option("--lengths", o->lengths, "Prompt lengths in tokens, comma-separated")->capture_default_str();
  c->add_option("--depths", o->depths, "Needle depths in [0, 1] (0 = start), comma-separated")->capture_default_str();
  c->add_option("--trials", o->trials, "Cases per (length, depth), each with its own key and filler")
      ->check(positive_number())->capture_default_str();
  c->add_option("--seed", o->seed, "Seed of the generated cases")->capture_default_str();
  c->add_option("-n,--n-predict", o->n_predict, "Tokens generated per answer (greedy)")
      ->check(positive_number())->capture_default_str();
  c->add_flag("--no-chat", o->no_chat, "Plain text prompt instead of the model's chat template");
  c->add_option("--json-out", o->json_out, "Also write per-cell and per-trial results (keys, answers) as JSON");
  c->footer("Each length gets a context of its own size (-c is not used).");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
