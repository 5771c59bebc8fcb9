#pragma once
// `kvforge heads eval`: task accuracy of per-head mixed caches against
// sparsity, for gate files (RLKV / DuoAttention head patterns), random heads
// (several seeds: mean and sample sd), and a window cache and H2O / SnapKV
// token eviction of the same KV bytes, with the full cache as the reference. One table and one figure.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/tasks.h"
#include "kv/head_pattern.h"

namespace kvforge {

struct HeadsEvalParams {
  std::vector<std::string> gate_files;
  std::vector<double> sparsities{0.2, 0.4, 0.6, 0.8};
  int32_t random_seeds = 3;  // random-head baselines: seeds 1..N
  int32_t sinks = 16, recent = 64;
  bool window = true;        // the window baseline at equal KV bytes
  bool evict = true;         // H2O and SnapKV baselines at equal KV bytes
  // Decode speed at this depth (`kvforge bench`'s tg test) of the full cache
  // and of the mixed cache at each sparsity; 0 = not measured.
  int32_t speed_depth = 8192, speed_steps = 16;
  TaskParams tasks;
};

struct HeadsEvalRow {
  std::string method;    // "full", a gate file, "random", "window", "h2o", "snapkv"
  double sparsity = 0;   // share of streaming heads (window: of the mixed cache it matches)
  std::string policy;    // the --kv spelling (random: of the first seed)
  std::vector<double> task_acc, task_sd;  // per task: accuracy (random: mean over seeds, sample sd)
  double mean = 0, sd = 0;                // over tasks (random: of the per-seed means)
  uint64_t kv_bytes = 0;                  // KV cache held at the longest length (kv_bytes_held)
  // At params.speed_depth (full and head-mixed rows; 0 = not measured): the
  // KV bytes held and decode tokens/s, one measurement per sparsity shared by
  // the mixed rows (equal numbers of streaming heads read equal bytes).
  uint64_t speed_kv_bytes = 0;
  double decode_tps = 0;
};

struct HeadsEval {
  HeadsEvalParams params;
  int32_t length = 0;  // the longest length: where kv_bytes are counted
  std::vector<HeadsEvalRow> rows;
  double seconds = 0;
};

// A task run (one policy) finished: (runs done, total runs, its policy).
using HeadsEvalProgress = std::function<void(int32_t, int32_t, const std::string&)>;

// Task runs and speed measurements of an evaluation: what its progress counts to.
int32_t heads_eval_policies(const HeadsEvalParams& params);

HeadsEval run_heads_eval(const Model& model, const ContextParams& base, const HeadsEvalParams& params, bool chat,
                         const HeadsEvalProgress& progress = {});

std::string heads_eval_table(const HeadsEval& e);
// Accuracy (mean over tasks) vs sparsity, one line per method; random with
// error bars. (Data and script: for tests, no gnuplot needed.)
std::string heads_eval_plot_data(const HeadsEval& e);
std::string heads_eval_plot_script(const HeadsEval& e, const std::string& data, const std::string& png);
// A gate table as a heat map (layers x KV heads, alpha in [0, 1]).
std::string gates_heatmap_data(const HeadGates& g);
std::string gates_heatmap_script(const HeadGates& g, const std::string& title, const std::string& data,
                                 const std::string& png);

}  // namespace kvforge
