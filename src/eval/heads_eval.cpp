// See heads_eval.h.
#include "eval/heads_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <tuple>

#include "eval/bench.h"
#include "eval/table.h"
#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvforge {

namespace {

bool has_mixed_rows(const HeadsEvalParams& params) {
  return !params.gate_files.empty() || params.random_seeds > 0;
}

// Decode tokens/s at params.speed_depth with one policy: `kvforge bench`'s tg
// test (random tokens, one repetition after its warm-up).
double decode_speed(const Model& model, const ContextParams& base, const KvPolicy& kv, const HeadsEvalParams& params) {
  BenchParams bp;
  bp.n_prompt = {};
  bp.n_gen = {params.speed_steps};
  bp.n_depth = {params.speed_depth};
  bp.n_reps = 1;
  bp.n_threads = base.n_threads;
  bp.n_batch = base.n_batch;
  bp.kv = kv;
  double tps = 0;
  run_bench(model, bp, [&](const BenchResult& r) { tps = r.avg_ts; },
            [](const std::string& note) { fail("heads eval --speed-depth: {}", note); });
  return tps;
}

}  // namespace

int32_t heads_eval_policies(const HeadsEvalParams& params) {
  const int32_t per_sparsity = (int32_t)params.gate_files.size() + params.random_seeds + (params.window ? 1 : 0) +
                               (params.evict ? 2 : 0) + (params.speed_depth > 0 && has_mixed_rows(params) ? 1 : 0);
  return 1 + (params.speed_depth > 0 ? 1 : 0) + (int32_t)params.sparsities.size() * per_sparsity;
}

HeadsEval run_heads_eval(const Model& model, const ContextParams& base, const HeadsEvalParams& params, bool chat,
                         const HeadsEvalProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  if (base.kv.window > 0 || base.kv.heads.kind != KvHeadChoice::Kind::None)
    fail("heads eval chooses the history of every policy itself: --kv may only set the storage (e.g. q8)");
  if (params.sparsities.empty()) fail("heads eval: no sparsities");
  if (params.tasks.lengths.empty()) fail("heads eval: no lengths");
  for (double s : params.sparsities)
    if (!(s >= 0 && s <= 1)) fail("sparsity {} is outside [0, 1]", s);
  if (params.speed_depth < 0 || (params.speed_depth > 0 && params.speed_steps < 1))
    fail("heads eval: --speed-depth must be >= 0 and --speed-steps >= 1");
  HeadsEval e;
  e.params = params;
  e.length = *std::max_element(params.tasks.lengths.begin(), params.tasks.lengths.end());
  const ModelConfig& c = model.config();
  const KvShape shape{c.n_layer, c.n_kv_head, c.head_dim_k, c.head_dim_v};
  const size_t n_tasks = params.tasks.tasks.size();
  const int32_t total = heads_eval_policies(params);
  int32_t done = 0;
  // Per-task accuracy of one policy.
  auto measure = [&](const KvPolicy& kv) {
    ContextParams cp = base;
    cp.kv = kv;
    const TaskResult r = run_tasks(model, cp, params.tasks, chat);
    std::vector<double> acc(n_tasks, 0.0);
    for (size_t t = 0; t < n_tasks; ++t) {
      int32_t ok = 0, n = 0;
      for (const TaskCell& cell : r.cells)
        if (cell.task == params.tasks.tasks[t]) ok += cell.correct, n += cell.total;
      acc[t] = n ? (double)ok / n : 0.0;
    }
    if (progress) progress(++done, total, kv.describe());
    return acc;
  };
  auto row_of = [&](const std::string& method, double s, const KvPolicy& kv) {
    HeadsEvalRow row{method, s, kv.describe(), measure(kv), std::vector<double>(n_tasks, 0.0), 0, 0, 0};
    row.mean = mean_of(row.task_acc);
    row.kv_bytes = kv_bytes_held(resolve_kv_layout(kv, shape, e.length), e.length);
    return row;
  };
  // Every file is checked before hours of measuring start.
  for (const std::string& f : params.gate_files) {
    KvPolicy kv = base.kv;
    kv.heads = {KvHeadChoice::Kind::File, f, 0, {}, 0.5, params.sinks, params.recent};
    resolve_kv_layout(kv, shape, e.length);
  }
  // KV bytes at the speed depth and decode tokens/s there, of one policy.
  auto speed_of = [&](const KvPolicy& kv) {
    const double tps = decode_speed(model, base, kv, params);
    if (progress) progress(++done, total, "speed: " + kv.describe());
    return std::pair<uint64_t, double>{kv_bytes_held(resolve_kv_layout(kv, shape, params.speed_depth),
                                                      params.speed_depth), tps};
  };
  e.rows.push_back(row_of("full", 0, base.kv));
  if (params.speed_depth > 0) std::tie(e.rows.back().speed_kv_bytes, e.rows.back().decode_tps) = speed_of(base.kv);
  const uint64_t bytes_per_token = make_kv_cache(base.kv, shape, 1)->bytes_per_token();
  for (double s : params.sparsities) {
    const size_t first_mixed = e.rows.size();
    for (const std::string& f : params.gate_files) {
      KvPolicy kv = base.kv;
      kv.heads = {KvHeadChoice::Kind::File, f, 0, {}, s, params.sinks, params.recent};
      e.rows.push_back(row_of(std::filesystem::path(f).filename().string(), s, kv));
    }
    uint64_t mixed_bytes = 0;
    if (params.random_seeds > 0) {
      std::vector<std::vector<double>> per_seed;
      KvPolicy first;
      for (int32_t seed = 1; seed <= params.random_seeds; ++seed) {
        KvPolicy kv = base.kv;
        kv.heads = {KvHeadChoice::Kind::Random, "", (uint64_t)seed, {}, s, params.sinks, params.recent};
        if (seed == 1) first = kv;
        per_seed.push_back(measure(kv));
      }
      HeadsEvalRow row{"random", s, first.describe(), {}, {}, 0, 0, 0};
      std::vector<double> means;
      for (const auto& acc : per_seed) means.push_back(mean_of(acc));
      for (size_t t = 0; t < n_tasks; ++t) {
        std::vector<double> v;
        for (const auto& acc : per_seed) v.push_back(acc[t]);
        row.task_acc.push_back(mean_of(v));
        row.task_sd.push_back(stddev_of(v));
      }
      row.mean = mean_of(means);
      row.sd = stddev_of(means);
      row.kv_bytes = mixed_bytes = make_kv_cache(first, shape, e.length)->bytes();
      e.rows.push_back(row);
    }
    if (params.speed_depth > 0 && e.rows.size() > first_mixed) {  // the layout of the first mixed row
      KvPolicy kv = base.kv;
      const HeadsEvalRow& r = e.rows[first_mixed];
      kv.heads = r.method == "random"
                     ? KvHeadChoice{KvHeadChoice::Kind::Random, "", 1, {}, s, params.sinks, params.recent}
                     : KvHeadChoice{KvHeadChoice::Kind::File, params.gate_files[0], 0, {}, s, params.sinks, params.recent};
      const auto [bytes, tps] = speed_of(kv);
      for (size_t i = first_mixed; i < e.rows.size(); ++i) e.rows[i].speed_kv_bytes = bytes, e.rows[i].decode_tps = tps;
    }
    if ((params.window || params.evict) && mixed_bytes == 0) {  // no random rows: the same count of streaming heads from seed 1
        KvPolicy kv = base.kv;
        kv.heads = {KvHeadChoice::Kind::Random, "", 1, {}, s, params.sinks, params.recent};
      mixed_bytes = make_kv_cache(kv, shape, e.length)->bytes();
    }
    if (params.window) {
      // A uniform window holding the same bytes: sinks + W tokens in every head.
      KvPolicy kv = base.kv;
      kv.sinks = params.sinks;
      kv.window = std::max<int32_t>(1, (int32_t)std::llround((double)mixed_bytes / (double)bytes_per_token) - params.sinks);
      e.rows.push_back(row_of("window", s, kv));
    }
    if (params.evict) {  // token eviction keeping the same bytes: that many tokens in every head
      const int32_t budget = std::max<int32_t>(2, (int32_t)std::llround((double)mixed_bytes / (double)bytes_per_token));
      const int32_t window = std::min(32, budget / 2);
      for (const KvEviction& ev : {KvEviction{KvEviction::Kind::H2O, budget, budget / 2},
                                   KvEviction{KvEviction::Kind::SnapKV, budget, 0, window, window > 7 ? 7 : 1}}) {
        KvPolicy kv = base.kv;
        kv.evict = ev;
        e.rows.push_back(row_of(ev.kind == KvEviction::Kind::H2O ? "h2o" : "snapkv", s, kv));
      }
    }
  }
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

std::string heads_eval_table(const HeadsEval& e) {
  std::vector<std::string> headers{"method", "sparsity", "policy", fmt::format("KV bytes @{}", e.length)};
  std::vector<Align> align{Align::Left, Align::Right, Align::Left, Align::Right};
  for (const std::string& t : e.params.tasks.tasks) headers.push_back(t), align.push_back(Align::Right);
  headers.push_back("mean");
  align.push_back(Align::Right);
  const int32_t depth = e.params.speed_depth;
  if (depth > 0) {
    headers.insert(headers.end(), {fmt::format("KV bytes @{}", depth), fmt::format("decode tok/s @{}", depth)});
    align.insert(align.end(), {Align::Right, Align::Right});
  }
  auto cell = [](double acc, double sd, bool with_sd) {
    return with_sd ? fmt::format("{:.0f} ± {:.0f}%", acc * 100, sd * 100) : fmt_percent(acc);
  };
  std::vector<std::vector<std::string>> rows;
  for (const HeadsEvalRow& r : e.rows) {
    const bool sd = r.method == "random" && e.params.random_seeds > 1;
    std::vector<std::string> row{r.method, r.method == "full" ? "0" : fmt::format("{:g}", r.sparsity), r.policy,
                                 fmt::format("{:.2f} MB", r.kv_bytes / 1e6)};
    for (size_t t = 0; t < r.task_acc.size(); ++t) row.push_back(cell(r.task_acc[t], r.task_sd[t], sd));
    row.push_back(cell(r.mean, r.sd, sd));
    if (depth > 0) {
      row.push_back(r.decode_tps > 0 ? fmt::format("{:.2f} MB", r.speed_kv_bytes / 1e6) : "");
      row.push_back(r.decode_tps > 0 ? fmt::format("{:.1f}", r.decode_tps) : "");
    }
    rows.push_back(std::move(row));
  }
  return format_markdown_table(headers, rows, align);
}

namespace {

// Methods in row order, "full" first.
std::vector<std::string> methods_of(const HeadsEval& e) {
  std::vector<std::string> m;
  for (const HeadsEvalRow& r : e.rows)
    if (std::find(m.begin(), m.end(), r.method) == m.end()) m.push_back(r.method);
  return m;
}

}  // namespace

std::string heads_eval_plot_data(const HeadsEval& e) {
  // One block per method (gnuplot `index`): sparsity, accuracy %, sd %.
  std::string s;
  for (const std::string& m : methods_of(e)) {
    s += fmt::format("# {}\n", m);
    for (const HeadsEvalRow& r : e.rows)
      if (r.method == m) s += fmt::format("{} {} {}\n", r.sparsity, r.mean * 100, r.sd * 100);
    s += "\n\n";
  }
  return s;
}

std::string heads_eval_plot_script(const HeadsEval& e, const std::string& data, const std::string& png) {
  const std::vector<std::string> methods = methods_of(e);
  std::string s = fmt::format(
      // noenhanced: file names such as adapter_weights.tsv are titles, not subscripts
      "set terminal pngcairo size 900,600 noenhanced font ',10'\nset output '{}'\n"
      "set title 'task accuracy vs sparsity (share of streaming heads; {} sinks + {} recent)'\n"
      "set xlabel 'sparsity'\nset ylabel 'accuracy, mean over tasks (%)'\nset xrange [-0.05:1.05]\n"
      "set yrange [-5:105]\nset key bottom left\nset grid\n",
      png, e.params.sinks, e.params.recent);
  s += "plot ";
  for (size_t i = 0; i < methods.size(); ++i) {
    const std::string& m = methods[i];
    if (i) s += ", \\\n     ";
    if (m == "full")
      s += fmt::format("'{}' index {} using 1:2 with points pt 7 ps 2 title 'full cache'", data, i);
    else if (m == "random")
      s += fmt::format("'{}' index {} using 1:2:3 with yerrorlines title 'random heads (mean ± sd over {} seeds)'",
                       data, i, e.params.random_seeds);
    else if (m == "window")
      s += fmt::format("'{}' index {} using 1:2 with linespoints dt 2 title 'window at equal KV bytes'", data, i);
    else
      s += fmt::format("'{}' index {} using 1:2 with linespoints title '{}'", data, i, m);
  }
  return s + "\n";
}

std::string gates_heatmap_data(const HeadGates& g) {
  std::string s;
  for (int l = 0; l < g.n_layer; ++l) {
    for (int h = 0; h < g.n_kv_head; ++h) s += fmt::format("{}{}", h ? " " : "", g.at(l, h));
    s += "\n";
  }
  return s;
}

std::string gates_heatmap_script(const HeadGates& g, const std::string& title, const std::string& data,
                                 const std::string& png) {
  return fmt::format(
      "set terminal pngcairo size {},{} noenhanced font ',10'\nset output '{}'\nset title '{}'\n"
      "set xlabel 'KV head'\nset ylabel 'layer'\nset cbrange [0:1]\nset cblabel 'gate alpha'\n"
      "set palette defined (0 '#3b4cc0', 0.5 '#dddddd', 1 '#b40426')\n"
      "set xrange [-0.5:{}]\nset yrange [-0.5:{}]\nset xtics 1\nset ytics {}\n"
      "plot '{}' matrix with image notitle\n",
      std::max(400, 120 + 40 * g.n_kv_head), std::max(400, 120 + 18 * g.n_layer), png, title, g.n_kv_head - 0.5,
      g.n_layer - 0.5, g.n_layer > 40 ? 4 : 2, data);
}

}  // namespace kvforge
