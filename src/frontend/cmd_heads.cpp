// `kvforge heads`: head-pattern files (RLKV adapter_weights.tsv, DuoAttention
// full_attention_heads.tsv): show one (the selection at a sparsity, a heat
// map), write random ones, and evaluate gate files against sparsity.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/gnuplot.h"
#include "eval/heads_eval.h"
#include "eval/list_options.h"
#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/command_group.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "kv/head_pattern.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

namespace fs = std::filesystem;

struct ShowOptions {
  std::string file;
  double sparsity = -1;
  std::string png;
};

// The gate table, and with --sparsity the selection: 1 = full history, 0 = streaming.
void show(const ShowOptions& o) {
  const HeadGates g = read_head_gates(o.file);
  std::printf("%s: %d layers x %d KV heads (gates clipped to [0, 1])\n", o.file.c_str(), g.n_layer, g.n_kv_head);
  if (o.sparsity >= 0) {
    const std::vector<uint8_t> full = select_full_heads(g, o.sparsity);
    int n_full = 0;
    for (uint8_t f : full) n_full += f;
    std::printf("sparsity %g: %d of %zu heads full, %zu streaming (1 = full history)\n", o.sparsity, n_full,
                full.size(), full.size() - n_full);
    for (int l = 0; l < g.n_layer; ++l)
      for (int h = 0; h < g.n_kv_head; ++h)
        std::printf("%d%c", full[(size_t)l * g.n_kv_head + h], h + 1 == g.n_kv_head ? '\n' : '\t');
  } else {
    for (int l = 0; l < g.n_layer; ++l)
      for (int h = 0; h < g.n_kv_head; ++h) std::printf("%.4f%c", g.at(l, h), h + 1 == g.n_kv_head ? '\n' : '\t');
  }
  if (!o.png.empty()) {
    const fs::path png(o.png);
    if (png.extension() != ".png") fail("--png wants a file name ending in .png, got '{}'", o.png);
    const std::string dir = png.parent_path().empty() ? "." : png.parent_path().string();
    const std::string title = fs::path(o.file).filename().string();
    draw_with_gnuplot(dir, png.stem().string(), gates_heatmap_data(g), [&](const std::string& d, const std::string& p) {
      return gates_heatmap_script(g, title, d, p);
    });
    std::fprintf(stderr, "[kvforge] heat map: %s\n", o.png.c_str());
  }
}

struct RandomOptions {
  ModelOptions model;
  uint64_t seed = 1;
  std::string out;
};

void write_random(const RandomOptions& o) {
  auto model = o.model.load_model();
  const ModelConfig& c = model->config();
  write_head_gates(o.out, random_head_gates(c.n_layer, c.n_kv_head, o.seed));
  std::fprintf(stderr, "[kvforge] %s: %d layers x %d KV heads, gates uniform in [0, 1) from seed %llu\n",
               o.out.c_str(), c.n_layer, c.n_kv_head, (unsigned long long)o.seed);
}

struct EvalOptions {
  ModelOptions model;
  std::vector<std::string> gates;
  std::string sparsity = "0.2,0.4,0.6,0.8";
  int32_t seeds = 3;
  int32_t sinks = 16, recent = 64;
  bool no_window = false;
  bool no_evict = false;
  int32_t speed_depth = 8192, speed_steps = 16;
  std::string tasks;
  std::string lengths = "512";
  int32_t trials = 5;
  uint64_t seed = 42;
  bool no_chat = false;
  std::string out = "heads-eval";
};

void eval(const EvalOptions& o) {
  HeadsEvalParams p;
  p.gate_files = o.gates;
  p.sparsities = parse_fraction_list(o.sparsity, "--sparsity");
  p.random_seeds = o.seeds;
  p.sinks = o.sinks;
  p.recent = o.recent;
  p.window = !o.no_window;
  p.evict = !o.no_evict;
  p.speed_depth = o.speed_depth;
  p.speed_steps = o.speed_steps;
  if (!o.tasks.empty()) p.tasks.tasks = split_list(o.tasks);
  for (const std::string& t : p.tasks.tasks)
    if (std::find(task_names().begin(), task_names().end(), t) == task_names().end())
      fail("unknown task '{}' in --tasks (expected {})", t, fmt::join(task_names(), ", "));
  p.tasks.lengths = parse_int_list(o.lengths, "--lengths", 64);
  p.tasks.trials = o.trials;
  p.tasks.seed = o.seed;
  for (const std::string& f : o.gates) read_head_gates(f);  // bad files fail before the model loads
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (!fs::is_directory(o.out)) fail("cannot create the output directory '{}'", o.out);
  auto model = o.model.load_model();
  const ContextParams cp = o.model.context_params();
  const int32_t total = heads_eval_policies(p);
  ProgressBar bar("heads eval", total);
  const auto t0 = std::chrono::steady_clock::now();
  const HeadsEval e = run_heads_eval(*model, cp, p, !o.no_chat, [&](int32_t done, int32_t, const std::string& kv) {
    bar.update(done, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), kv);
  });
  bar.finish();
  const std::string table = heads_eval_table(e);
  std::printf("%s", table.c_str());
  std::ofstream md(fs::path(o.out) / "heads-eval.md");
  md << fmt::format("# kvforge heads eval\n\ntasks {}, lengths {}, {} trials per (task, length), seed {}; KV bytes "
                    "counted at {} tokens; {} sinks + {} recent tokens per streaming head; {}; {:.0f} s\n\n",
                    fmt::join(p.tasks.tasks, ","), o.lengths, p.tasks.trials, p.tasks.seed, e.length, p.sinks,
                    p.recent,
                    p.speed_depth > 0 ? fmt::format("decode speed: {} steps at depth {}, {} threads", p.speed_steps,
                                                    p.speed_depth, cp.n_threads > 0 ? fmt::to_string(cp.n_threads)
                                                                                    : std::string("all physical"))
                                      : std::string("no speed measured"),
                    e.seconds)
     << table;
  nlohmann::json rows = nlohmann::json::array();
  for (const HeadsEvalRow& r : e.rows)
    rows.push_back({{"method", r.method}, {"sparsity", r.sparsity}, {"policy", r.policy}, {"task_accuracy", r.task_acc},
                    {"task_sd", r.task_sd}, {"mean", r.mean}, {"sd", r.sd}, {"kv_bytes", r.kv_bytes},
                    {"speed_kv_bytes", r.speed_kv_bytes}, {"decode_tps", r.decode_tps}});
  std::ofstream(fs::path(o.out) / "heads-eval.json")
      << nlohmann::json{{"tasks", p.tasks.tasks}, {"lengths", p.tasks.lengths}, {"trials", p.tasks.trials},
                        {"seed", p.tasks.seed}, {"length_for_bytes", e.length}, {"speed_depth", p.speed_depth},
                        {"speed_steps", p.speed_steps}, {"rows", rows}, {"seconds", e.seconds}}
             .dump(2)
      << "\n";
  draw_with_gnuplot(o.out, "heads-eval", heads_eval_plot_data(e), [&](const std::string& d, const std::string& png) {
    return heads_eval_plot_script(e, d, png);
  });
  for (const std::string& f : o.gates) {
    const HeadGates g = read_head_gates(f);
    const std::string stem = "gates-" + fs::path(f).stem().string();
    draw_with_gnuplot(o.out, stem, gates_heatmap_data(g), [&](const std::string& d, const std::string& png) {
      return gates_heatmap_script(g, fs::path(f).filename().string(), d, png);
    });
  }
  std::fprintf(stderr, "[kvforge] wrote %s/heads-eval.{md,json,png}\n", o.out.c_str());
}

CommandRegistrar reg(58, [](CLI::App& root) {
  CLI::App* heads = &command_group(root, "heads", "Per-head KV cache gates (RLKV / DuoAttention)");

  auto so = std::make_shared<ShowOptions>();
  auto* s = heads->add_subcommand("show", "Print a gate file, or the full/streaming selection at a sparsity; "
                                          "optionally draw it as a heat map");
  s->add_option("FILE", so->file, "adapter_weights.tsv / full_attention_heads.tsv")->required();
  s->add_option("--sparsity", so->sparsity, "Print the selection at this sparsity (1 = full history, 0 = streaming)")
      ->check(CLI::Range(0.0, 1.0));
  s->add_option("--png", so->png, "Draw the gates as a heat map (layers x KV heads) into this PNG");
  s->callback([so] { show(*so); });

  auto ro = std::make_shared<RandomOptions>();
  auto* r = heads->add_subcommand("random", "Write a gate file of uniform random gates for a model");
  ro->model.add_to(*r);
  r->add_option("--seed", ro->seed, "Seed of the gates")->capture_default_str();
  r->add_option("-o,--output", ro->out, "The TSV file to write")->required();
  r->callback([ro] { write_random(*ro); });

  auto eo = std::make_shared<EvalOptions>();
  auto* e = heads->add_subcommand("eval", "Task accuracy vs sparsity for gate files, random heads and a window "
                                          "at equal KV bytes: a table and a PNG");
  eo->model.add_to(*e);
  e->add_option("--gates", eo->gates, "Gate files (TSV, one row per layer, one column per KV head)");
  e->add_option("--sparsity", eo->sparsity, "Sparsities (shares of streaming heads), comma-separated")
      ->capture_default_str();
  e->add_option("--seeds", eo->seeds, "Random-head baselines: seeds 1..N (0 = none)")
      ->check(non_negative_number())->capture_default_str();
  e->add_option("--sinks", eo->sinks, "Sink tokens of a streaming head")->check(non_negative_number())->capture_default_str();
  e->add_option("--recent", eo->recent, "Recent tokens of a streaming head")->check(positive_number())->capture_default_str();
  e->add_flag("--no-window", eo->no_window, "Leave out the window baseline");
  e->add_flag("--no-evict", eo->no_evict, "Leave out the H2O and SnapKV baselines");
  e->add_option("--speed-depth", eo->speed_depth,
                 "Decode tok/s and KV bytes at this depth for the full and each mixed cache (0 = skip)")
      ->check(non_negative_number())->capture_default_str();
  e->add_option("--speed-steps", eo->speed_steps, "Decode steps timed at --speed-depth")
      ->check(positive_number())->capture_default_str();
  e->add_option("--tasks", eo->tasks, fmt::format("Tasks (default: {})", fmt::join(default_task_names(), ",")));
  e->add_option("--lengths", eo->lengths, "Prompt lengths in tokens; KV bytes are counted at the longest")
      ->capture_default_str();
  e->add_option("--trials", eo->trials, "Cases per (task, length)")->check(positive_number())->capture_default_str();
  e->add_option("--seed", eo->seed, "Seed of the task cases")->capture_default_str();
  e->add_flag("--no-chat", eo->no_chat, "Plain text prompts instead of the model's chat template");
  e->add_option("-o,--output", eo->out, "Output directory (heads-eval.md, .json, .png, gates-*.png)")
      ->capture_default_str();
  e->callback([eo] { eval(*eo); });
});

}  // namespace
}  // namespace kvforge::cli
