// `kvforge report`: memory / quality / speed of every KV policy, as
// DIR/report.md (one table) and DIR/report.png (gnuplot). See eval/report.h.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/eval_text.h"
#include "eval/list_options.h"
#include "eval/report.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct ReportOptions {
  ModelOptions model;
  std::string policies;
  std::string lengths = "512,2048,8192";
  std::string depths = "0.1,0.5,0.9";
  std::string file;
  std::string out_dir;
  int32_t ppl_chunks = 4;
  int32_t trials = 5;
  int32_t decode_depth = 8192;
  int32_t decode_steps = 32;
  uint64_t seed = 42;
  bool quick = false;
};

nlohmann::json report_json(const Report& r) {
  nlohmann::json rows = nlohmann::json::array();
  auto nums = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(std::isnan(x) ? nlohmann::json() : nlohmann::json(x));
    return a;
  };
  auto num = [](double x) { return std::isnan(x) ? nlohmann::json() : nlohmann::json(x); };
  for (const auto& p : r.rows)
    rows.push_back({{"policy", p.spec}, {"canonical", p.canonical}, {"skipped", p.skipped},
                    {"bytes_per_token", num(p.bytes_per_token)}, {"cache_bytes", nums(p.cache_bytes)},
                    {"ppl", nums(p.ppl)}, {"needle_accuracy", nums(p.needle)}, {"decode_tps", num(p.decode_tps)}});
  return {{"model", r.params.model_name},        {"lengths", r.params.lengths},
          {"ppl_chunks", r.params.ppl_chunks},   {"needle_depths", r.params.depths},
          {"needle_trials", r.params.needle_trials}, {"seed", r.params.seed},
          {"decode_depth", r.params.decode_depth}, {"decode_steps", r.params.decode_steps},
          {"rows", rows},                        {"notes", r.notes},
          {"seconds", r.seconds}};
}

void run(ReportOptions& o) {
  namespace fs = std::filesystem;
  ReportParams p;
  if (o.quick) {  // a small, fast version (the tests use it)
    p.policies = {"full", "window:64,sinks:4", "q8"};
    p.lengths = {256, 512};
    p.ppl_chunks = 1;
    p.depths = {0.5};
    p.needle_trials = 1;
    p.decode_depth = 256;
    p.decode_steps = 8;
  } else {
    p.policies = default_report_policies();
    p.lengths = parse_int_list(o.lengths, "--lengths", 16);
    p.ppl_chunks = o.ppl_chunks;
    p.depths = parse_fraction_list(o.depths, "--depths");
    p.needle_trials = o.trials;
    p.decode_depth = o.decode_depth;
    p.decode_steps = o.decode_steps;
  }
  if (!o.policies.empty()) p.policies = split_policies(o.policies);
  p.seed = o.seed;
  p.text_path = resolve_eval_text(o.file);
  p.model_name = fs::path(resolve_model_path(o.model.model)).filename().string();
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("cannot create output directory {}: {}", o.out_dir, ec.message());

  auto model = o.model.load_model();
  warn_beyond_training(model->config(), p.decode_depth, "--decode-depth");
  ContextParams base = o.model.context_params();
  const Report r = run_report(*model, base, p, [](const std::string& line) {
    std::fprintf(stderr, "[kvforge report] %s\n", line.c_str());
    std::fflush(stderr);
  });
  const fs::path md = fs::path(o.out_dir) / "report.md";
  {
    std::ofstream out(md);
    if (!out) fail("cannot write {}", md.string());
    out << report_markdown(r);
    std::ofstream js(fs::path(o.out_dir) / "report.json");
    js << report_json(r).dump(2) << "\n";
  }
  std::printf("%s", report_table(r).c_str());
  std::fflush(stdout);
  plot_report(r, o.out_dir);
  std::fprintf(stderr, "[kvforge report] wrote %s, report.json and report.png in %s (%.0f s)\n", md.string().c_str(),
               o.out_dir.c_str(), r.seconds);
}

CommandRegistrar reg(60, [](CLI::App& root) {
  auto o = std::make_shared<ReportOptions>();
  auto* c = root.add_subcommand("report", "Table and plot of cache bytes, perplexity, needle accuracy and decode "
                                          "speed for every KV policy");
  o->model.add_to(*c);
  c->add_option("--policies", o->policies,
                "KV policies separated by ';' (default: full;window:256,sinks:4;window:1024,sinks:4;q8;q4;"
                "q4,hadamard;window:1024,sinks:4+q8)");
  c->add_option("--lengths", o->lengths, "Context lengths (cache bytes, perplexity chunk size, needle prompt length)")
      ->capture_default_str();
  c->add_option("--ppl-chunks", o->ppl_chunks, "Perplexity chunks per length")->check(positive_number())
      ->capture_default_str();
  c->add_option("--depths", o->depths, "Needle depths")->capture_default_str();
  c->add_option("--trials", o->trials, "Needle trials per (length, depth)")->check(positive_number())
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Seed of the needle cases")->capture_default_str();
  c->add_option("--decode-depth", o->decode_depth, "Tokens prefilled before timing decode")
      ->check(positive_number())->capture_default_str();
  c->add_option("--decode-steps", o->decode_steps, "Decode steps timed")->check(positive_number())
      ->capture_default_str();
  c->add_option("-f,--file", o->file, "Perplexity text (default: the pinned evaluation text)");
  c->add_option("-o,--output", o->out_dir, "Output directory (report.md, report.json, report.png, report.gp)")
      ->required();
  c->add_flag("--quick", o->quick,
              "Small fast run: policies full;window:64,sinks:4;q8, lengths 256,512, 1 chunk, 1 needle trial at "
              "depth 0.5, decode at depth 256 (--policies still applies)");
  c->footer("--policies replaces --kv (which is not used), and each measurement sizes its own context "
            "(-c and --kv-type are not used); -b and -t apply to every policy.");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
