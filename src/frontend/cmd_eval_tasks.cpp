// `kvforge eval tasks`: accuracy on the verifiable task suite (eval/tasks.h),
// or on GSM8K-format JSONL, for one KV policy. stdout: the table; stderr:
// progress.
#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/list_options.h"
#include "eval/progress_bar.h"
#include "eval/tasks.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "kv/kv_layout.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

struct TasksOptions {
  ModelOptions model;
  std::string tasks;
  std::string lengths = "512";
  int32_t trials = 10;
  uint64_t seed = 42;
  int32_t n_predict = 0;
  std::string jsonl;
  bool no_chat = false;
  std::string json_out;
};

nlohmann::json tasks_json(const TaskResult& r, const TaskParams& p, const std::string& kv) {
  nlohmann::json cells = nlohmann::json::array(), trials = nlohmann::json::array();
  for (const auto& c : r.cells)
    cells.push_back({{"task", c.task}, {"length", c.length}, {"correct", c.correct}, {"total", c.total},
                     {"accuracy", c.accuracy()}});
  for (const auto& t : r.trials)
    trials.push_back({{"task", t.task}, {"length", t.length}, {"n_prompt", t.n_prompt}, {"trial", t.trial},
                      {"expected", t.expected}, {"answer", t.answer}, {"extracted", t.extracted}, {"correct", t.correct}});
  return {{"kv", kv},           {"seed", p.seed},         {"trials_per_cell", p.trials}, {"tasks", p.tasks},
          {"lengths", p.lengths}, {"jsonl", p.jsonl},     {"accuracy", r.accuracy()},    {"correct", r.correct},
          {"total", r.total},   {"cells", cells},         {"trials", trials},            {"seconds", r.seconds}};
}

void run(const TasksOptions& o) {
  TaskParams p;
  if (!o.tasks.empty()) {
    if (!o.jsonl.empty()) fail("--tasks and --jsonl exclude each other");
    p.tasks = split_list(o.tasks);
    for (const std::string& t : p.tasks)
      if (std::find(task_names().begin(), task_names().end(), t) == task_names().end())
        fail("unknown task '{}' in --tasks (expected {})", t, fmt::join(task_names(), ", "));
  }
  p.lengths = parse_int_list(o.lengths, "--lengths", 64);
  p.trials = o.trials;
  p.seed = o.seed;
  p.jsonl = o.jsonl;
  p.n_predict = o.n_predict > 0 ? o.n_predict : (o.jsonl.empty() ? 16 : 256);
  const int32_t total = count_task_cases(p);  // reads and checks the JSONL file before the model loads
  auto model = o.model.load_model();
  const ContextParams cp = o.model.context_params();
  if (p.jsonl.empty())
    std::fprintf(stderr, "[kvforge] tasks %s, lengths %s, %d trials each, seed %llu, KV %s\n",
                 fmt::format("{}", fmt::join(p.tasks, ",")).c_str(), o.lengths.c_str(), p.trials,
                 (unsigned long long)p.seed, cp.kv.describe().c_str());
  else
    std::fprintf(stderr, "[kvforge] %d records of %s, KV %s\n", total, p.jsonl.c_str(), cp.kv.describe().c_str());
  const auto t0 = std::chrono::steady_clock::now();
  ProgressBar bar("tasks", total);
  int32_t ok = 0;
  const TaskResult r = run_tasks(*model, cp, p, !o.no_chat, [&](int32_t done, int32_t, const TaskTrial& t) {
    ok += t.correct;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.update(done, s, fmt::format("{}/{} correct", ok, done));
  });
  bar.finish();
  std::printf("tasks, KV %s, %d trials per cell, seed %llu\n\n%s", cp.kv.describe().c_str(), p.trials,
              (unsigned long long)p.seed, task_table(r, p).c_str());
  if (p.jsonl.empty()) {  // what the policy keeps, for comparisons at equal memory
    std::string held;
    for (int32_t len : p.lengths) {
      const KvLayout layout = resolve_kv_layout(cp.kv, model->config().kv_shape(), task_context_size(p, cp.kv, len));
      held += fmt::format("{}{:.2f} MB at {} tokens", held.empty() ? "" : ", ", kv_bytes_held(layout, len) / 1e6, len);
    }
    std::printf("KV bytes held: %s\n", held.c_str());
  }
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    if (!out) fail("cannot write '{}'", o.json_out);
    out << tasks_json(r, p, cp.kv.describe()).dump(2) << "\n";
  }
}

CommandRegistrar reg(56, [](CLI::App& root) {
  CLI::App* ev = root.get_subcommand("eval");
  auto o = std::make_shared<TasksOptions>();
  auto* c = ev->add_subcommand("tasks", "Accuracy on verifiable tasks (retrieval, variable tracking, copying, "
                                        "arithmetic) or on GSM8K-format JSONL");
  o->model.add_to(*c);
  c->add_option("--tasks", o->tasks,
                fmt::format("Tasks, comma-separated (default: {})", fmt::join(default_task_names(), ",")));
  c->add_option("--lengths", o->lengths, "Prompt lengths in tokens, comma-separated")->capture_default_str();
  c->add_option("--trials", o->trials, "Cases per (task, length)")->check(positive_number())->capture_default_str();
  c->add_option("--seed", o->seed, "Seed of the generated cases")->capture_default_str();
  c->add_option("-n,--n-predict", o->n_predict, "Tokens generated per answer, greedy (default 16; 256 with --jsonl)")
      ->check(positive_number());
  c->add_option("--jsonl", o->jsonl, "GSM8K-format records (question, answer ending in '#### N') instead of the tasks");
  c->add_flag("--no-chat", o->no_chat, "Plain text prompt instead of the model's chat template");
  c->add_option("--json-out", o->json_out, "Also write per-cell and per-trial results (answers) as JSON");
  c->footer("Each length gets a context of its own size (-c is not used).");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
