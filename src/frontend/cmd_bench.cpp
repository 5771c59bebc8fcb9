// `kvforge bench`: llama-bench-style speed tests (pp / tg at depth), the
// memory-bandwidth probe, and the cache-on vs cache-off speed-up. The tests
// themselves live in src/eval/bench.cpp; this file parses flags and prints.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/bandwidth.h"
#include "eval/bench.h"
#include "eval/bench_op_times.h"
#include "eval/bench_parallel.h"
#include "eval/list_options.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct BenchOptions {
  std::string model;
  BenchParams tests;  // -p -n -d --pp-depth -r -b -c --seed go straight here
  std::vector<int> n_threads;
  std::string kv = "full";
  std::string kv_type;
  std::string mla_attn = "absorbed";
  bool no_cache = false;
  std::string output = "md";
  std::string json_out;
  bool bandwidth_only = false;
  double bw_gbs = 0;
  int bw_mib = 1024;
  int32_t cache_speedup = 0;
  int32_t speedup_prompt = 16;
  std::vector<int32_t> n_parallel;  // --parallel: batched decode of N sequences instead of the tests
  bool op_times = false;            // --op-times: time per op kind of decode steps instead of the tests
};

std::string fmt_params(double n) {
  return n >= 1e9 ? fmt::format("{:.2f} B", n / 1e9) : fmt::format("{:.2f} M", n / 1e6);
}
std::string iso_now() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Markdown rows, printed as each test finishes (fixed widths, like llama-bench).
class MarkdownTable {
 public:
  explicit MarkdownTable(bool kv_column) : kv_(kv_column) {}
  void header() {
    row({"model", "size", "params", "backend", "threads", "kv", "test", "t/s", "B/token", "BW share"});
    std::string sep = "|";
    for (size_t i = 0; i < std::size(kWidth); ++i) {
      if (i == 5 && !kv_) continue;
      const bool right = kRight[i];
      sep += fmt::format(" {}{} |", std::string(kWidth[i] - 1, '-'), right ? ":" : "-");
    }
    std::printf("%s\n", sep.c_str());
  }
  void row(const std::vector<std::string>& cells) {
    std::string line = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i == 5 && !kv_) continue;
      line += kRight[i] ? fmt::format(" {:>{}} |", cells[i], kWidth[i]) : fmt::format(" {:<{}} |", cells[i], kWidth[i]);
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  static constexpr int kWidth[] = {24, 10, 10, 7, 7, 12, 26, 18, 9, 8};
  static constexpr bool kRight[] = {false, true, true, false, true, false, true, true, true, true};
  bool kv_;
};

// One --op-times test: a markdown table, or one JSON line.
template <class Emit>
void print_op_times(const OpTimesResult& r, double gbs, bool md, Emit&& emit_json, const nlohmann::json& fields) {
  const double step_gbs = r.bytes_per_token / (r.ms_per_token * 1e6);
  if (md) {
    // One sequence: per token; N sequences (--parallel): per step of one token each.
    const char* per = r.n_seq > 1 ? "step" : "token";
    if (r.n_seq > 1)
      std::printf("\nop times, tg%d x%d @ d%d, %d threads: %.3f ms/step (%.1f t/s, all sequences); %.1f MB/step read "
                  "at %.1f GB/s",
                  r.n_gen, r.n_seq, r.n_depth, r.n_threads, r.ms_per_token, 1e3 * r.n_seq / r.ms_per_token,
                  r.bytes_per_token / 1e6, step_gbs);
    else
      std::printf("\nop times, %s%d @ d%d, %d threads: %.3f ms/token (%.1f t/s); %.1f MB/token read at %.1f GB/s",
                  r.n_prompt > 0 ? "pp" : "tg", r.n_prompt > 0 ? r.n_prompt : r.n_gen, r.n_depth, r.n_threads,
                  r.ms_per_token, 1e3 / r.ms_per_token, r.bytes_per_token / 1e6, step_gbs);
    if (gbs > 0) std::printf(" = %.1f%% of the %.1f GB/s bandwidth", 100 * step_gbs / gbs, gbs);
    std::printf("\n\n| op | calls/%s | ms/%s | %% of step | MB/%s | GB/s |\n|---|---:|---:|---:|---:|---:|\n", per, per,
                per);
    for (const OpTimesRow& o : r.rows)
      std::printf("| %s | %s | %.4f | %.1f%% | %s | %s |\n", o.op.c_str(),
                  o.calls > 0 ? fmt::format("{:.1f}", o.calls).c_str() : "", o.ms, 100 * o.share,
                  o.bytes ? fmt::format("{:.2f}", o.bytes / 1e6).c_str() : "",
                  o.bytes ? fmt::format("{:.1f}", o.gbs).c_str() : "");
    std::fflush(stdout);
  }
  nlohmann::json ops = nlohmann::json::array();
  for (const OpTimesRow& o : r.rows)
    ops.push_back({{"op", o.op}, {"calls_per_token", o.calls}, {"ms_per_token", o.ms}, {"share", o.share},
                   {"bytes_per_token", o.bytes}, {"gbs", o.gbs}});
  nlohmann::json j = fields;
  j.update({{"test", "op_times"}, {"n_parallel", r.n_seq}, {"n_gen", r.n_gen}, {"n_prompt", r.n_prompt},
            {"n_depth", r.n_depth},
            {"n_threads", r.n_threads},
            {"ms_per_token", r.ms_per_token}, {"bytes_per_token", r.bytes_per_token},
            {"bandwidth_gbs", gbs > 0 ? nlohmann::json(gbs) : nlohmann::json(nullptr)}, {"ops", ops},
            {"test_time", iso_now()}});
  emit_json(j);
}

void run_bench_command(const BenchOptions& o) {
  if (o.output != "md" && o.output != "jsonl") fail("-o must be md or jsonl, not '{}'", o.output);
  const bool md = o.output == "md";
  std::ofstream json_file;
  if (!o.json_out.empty()) {
    json_file.open(o.json_out);
    if (!json_file) fail("cannot write '{}'", o.json_out);
  }
  auto emit_json = [&](const nlohmann::json& j) {
    const std::string line = j.dump();
    if (!md) std::printf("%s\n", line.c_str()), std::fflush(stdout);
    if (json_file) json_file << line << "\n" << std::flush;
  };
  const std::vector<int> threads = o.n_threads.empty() ? std::vector<int>{0} : o.n_threads;

  // Bandwidth first (before the model is mapped), then forget its buffer in
  // the peak-RSS count.
  std::map<int, BandwidthResult> bw;  // by requested thread count
  if (o.bw_gbs <= 0 && o.n_parallel.empty()) {  // --parallel reports no bandwidth share
    for (int t : threads) {
      BandwidthParams bp;
      bp.n_threads = t;
      bp.total_bytes = (size_t)o.bw_mib << 20;
      bw[t] = measure_read_bandwidth(bp);
      if (!o.bandwidth_only) fmt::print(stderr, "[bench] memory bandwidth ({} threads): {:.1f} GB/s\n",
                                        bw[t].n_threads, bw[t].gbs);
    }
    reset_peak_rss();
  } else {
    for (int t : threads) bw[t].gbs = o.bw_gbs, bw[t].n_threads = t;
  }
  if (o.bandwidth_only) {
    for (int t : threads) {
      const BandwidthResult& b = bw[t];
      if (md)
        std::printf("memory read bandwidth: %.1f GB/s (%d threads, each streaming its own part of %s; best of %d "
                    "passes, mean %.1f GB/s)\n",
                    b.gbs, b.n_threads, human_bytes((double)b.total_bytes).c_str(), b.passes, b.mean_gbs);
      emit_json({{"test", "bandwidth"}, {"n_threads", b.n_threads}, {"bandwidth_gbs", b.gbs},
                 {"bandwidth_mean_gbs", b.mean_gbs}, {"buffer_bytes", b.total_bytes}, {"passes", b.passes}});
    }
    return;
  }

  const std::string path = resolve_model_path(o.model);
  auto model = Model::load(path);
  int64_t max_positions = o.cache_speedup > 0 ? (int64_t)o.speedup_prompt + o.cache_speedup : 0;
  if (o.cache_speedup <= 0) {
    for (int32_t d : o.tests.pp_depth)
      for (int32_t n : o.tests.n_prompt) max_positions = std::max<int64_t>(max_positions, (int64_t)d + n);
    for (int32_t d : o.tests.n_depth)
      for (int32_t n : o.tests.n_gen)
        if (n > 0) max_positions = std::max<int64_t>(max_positions, (int64_t)d + n);
  }
  warn_beyond_training(model->config(), max_positions, "the largest bench test");
  warn_mla_attn_unused(model->config(), o.mla_attn);
  BenchParams p = o.tests;
  // --kv "P1;P2;...": every test per policy, each with its own peak RSS.
  std::vector<KvPolicy> policies;
  for (const std::string& spec : split_list(o.kv, ';')) {
    policies.push_back(parse_kv_policy(spec));
    if (!o.kv_type.empty()) policies.back().storage = parse_kv_storage(o.kv_type);
  }
  if (policies.size() > 1 && o.cache_speedup > 0) fail("--cache-speedup takes one --kv policy");
  p.kv = policies[0];
  p.use_cache = !o.no_cache;
  BenchModelInfo info;
  nlohmann::json model_fields;
  auto describe_policy = [&](const KvPolicy& kv) {
    info = describe_for_bench(*model, path, kv);
    model_fields = {
        {"model_filename", info.filename}, {"model_type", info.type},  {"model_size", info.size},
        {"model_n_params", info.n_params}, {"backends", "CPU"},        {"kv_policy", kv.describe()},
        {"type_k", kv_storage_name(kv.storage)}, {"type_v", kv_storage_name(kv.storage)},
        {"n_batch", p.n_batch},            {"n_ubatch", p.n_batch},    {"bytes_per_token_weights", info.bytes_per_token_weights},
        {"kv_bytes_per_token", info.kv_bytes_per_token}};
  };
  describe_policy(p.kv);
  const bool kv_column = policies.size() > 1 || !(p.kv == KvPolicy{});

  if (o.cache_speedup > 0) {
    if (md) {
      std::printf("| model | threads | prompt | new tokens | with cache t/s | without cache t/s | speed-up | same tokens |\n");
      std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    }
    for (int t : threads) {
      p.n_threads = t;
      const CacheSpeedup s = run_cache_speedup(*model, p, o.cache_speedup, o.speedup_prompt);
      if (md)
        std::printf("| %s | %d | %d | %d | %.2f | %.2f | %.2fx | %s |\n", info.type.c_str(), s.n_threads, s.n_prompt,
                    s.n_new, s.ts_cache, s.ts_no_cache, s.speedup, s.identical ? "yes" : "NO");
      nlohmann::json j = model_fields;
      j.update({{"test", "cache_speedup"}, {"n_prompt", s.n_prompt}, {"n_gen", s.n_new}, {"n_threads", s.n_threads},
                {"ts_cache", s.ts_cache}, {"ts_no_cache", s.ts_no_cache}, {"seconds_cache", s.seconds_cache},
                {"seconds_no_cache", s.seconds_no_cache}, {"speedup", s.speedup}, {"identical", s.identical},
                {"peak_rss_bytes", peak_rss_bytes()}, {"test_time", iso_now()}});
      emit_json(j);
    }
    if (md) std::printf("\npeak RSS: %s\n", human_bytes((double)peak_rss_bytes()).c_str());
    return;
  }

  if (!o.n_parallel.empty()) {
    if (policies.size() > 1) fail("--parallel takes one --kv policy");
    if (md) {
      std::printf("| model | threads | kv | test | sequences | t/s, all sequences | t/s per sequence | vs 1 sequence |\n");
      std::printf("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |\n");
    }
    std::vector<std::pair<int, OpTimesResult>> op_tables;  // --op-times, by -t: printed after the speeds
    for (int t : threads) {
      p.n_threads = t;
      run_parallel_bench(*model, p, o.n_parallel, [&](const ParallelBenchResult& r) {
        if (o.op_times) op_tables.push_back({t, r.ops});
        if (md)
          std::printf("| %s | %d | %s | %s | %d | %.2f ± %.2f | %.2f | %s |\n", info.type.c_str(), r.n_threads,
                      p.kv.describe().c_str(), r.name.c_str(), r.n_seq, r.avg_ts, r.stddev_ts, r.avg_ts / r.n_seq,
                      r.speedup > 0 ? fmt::format("{:.2f}x", r.speedup).c_str() : "");
        std::fflush(stdout);
        nlohmann::json j = model_fields;
        j.update({{"test", "tg_parallel"}, {"n_parallel", r.n_seq}, {"n_gen", r.n_gen}, {"n_depth", r.n_depth},
                  {"n_threads", r.n_threads}, {"avg_ts", r.avg_ts}, {"stddev_ts", r.stddev_ts},
                  {"samples_ts", r.samples_ts},
                  {"speedup", r.speedup > 0 ? nlohmann::json(r.speedup) : nlohmann::json(nullptr)},
                  {"peak_rss_bytes", peak_rss_bytes()}, {"test_time", iso_now()}});
        emit_json(j);
      }, o.op_times);
    }
    for (const auto& [t, r] : op_tables) print_op_times(r, bw[t].gbs, md, emit_json, model_fields);
    return;
  }

  if (o.op_times) {
    if (policies.size() > 1) fail("--op-times takes one --kv policy");
    if (!p.use_cache) fail("--op-times times cached decode steps; drop --no-cache");
    const bool decode = std::any_of(p.n_gen.begin(), p.n_gen.end(), [](int32_t n) { return n > 0; });
    const std::vector<int32_t>& ns = decode ? p.n_gen : p.n_prompt;  // -n 0: the prefills of -p instead
    if (std::none_of(ns.begin(), ns.end(), [](int32_t n) { return n > 0; }))
      fail("--op-times times decode steps (-n > 0) or, with -n 0, prefills (-p > 0)");
    for (int t : threads) {
      p.n_threads = t;
      for (int32_t d : p.n_depth)
        for (int32_t n : ns)
          if (n > 0)
            print_op_times(run_op_times(*model, p, d, decode ? n : 0, decode ? 0 : n), bw[t].gbs, md, emit_json,
                           model_fields);
    }
    return;
  }

  MarkdownTable table(kv_column);
  if (md) table.header();
  int32_t last_ctx = 0;
  struct PolicyMemory {
    std::string kv;
    uint64_t peak_rss = 0, kv_bytes = 0, kv_used = 0;  // kv_used: at the deepest tg test
  };
  std::vector<PolicyMemory> memory;
  for (const KvPolicy& kv : policies) {
    p.kv = kv;
    describe_policy(kv);
    reset_peak_rss();  // the previous policy's cache is unmapped: count this one's alone
    PolicyMemory mem{kv.describe()};
    for (int t : threads) {
      p.n_threads = t;
      const double gbs = bw[t].gbs;
      run_bench(
          *model, p,
          [&](const BenchResult& r) {
            last_ctx = r.n_ctx;
            mem.kv_bytes = r.kv_bytes;
            if (r.is_tg() && r.use_cache) mem.kv_used = std::max(mem.kv_used, r.bytes_per_token_cache);
            const uint64_t bytes = info.bytes_per_token_weights + r.bytes_per_token_cache;
            std::optional<double> share;
            if (r.is_tg() && r.use_cache && gbs > 0) share = r.avg_ts * (double)bytes / (gbs * 1e9);
            if (md) {
              table.row({info.type, human_bytes((double)info.size), fmt_params((double)info.n_params), "CPU",
                         std::to_string(r.n_threads), kv.describe(), r.name,
                         fmt::format("{:.2f} ± {:.2f}", r.avg_ts, r.stddev_ts),
                         r.is_tg() ? fmt::format("{:.1f} MB", bytes / 1e6) : "",
                         share ? fmt::format("{:.1f}%", *share * 100) : ""});
            }
            nlohmann::json j = model_fields;
            j.update({{"test", r.name}, {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen}, {"n_depth", r.n_depth},
                      {"n_threads", r.n_threads}, {"n_ctx", r.n_ctx}, {"use_cache", r.use_cache},
                      {"avg_ns", (uint64_t)r.avg_ns}, {"stddev_ns", (uint64_t)r.stddev_ns}, {"avg_ts", r.avg_ts},
                      {"stddev_ts", r.stddev_ts}, {"samples_ns", r.samples_ns}, {"samples_ts", r.samples_ts},
                      {"bytes_per_token_cache", r.bytes_per_token_cache},
                      {"bytes_per_token", r.is_tg() ? nlohmann::json(bytes) : nlohmann::json(nullptr)},
                      {"bandwidth_gbs", gbs > 0 ? nlohmann::json(gbs) : nlohmann::json(nullptr)},
                      {"bandwidth_share", share ? nlohmann::json(*share) : nlohmann::json(nullptr)},
                      {"kv_bytes", r.kv_bytes}, {"peak_rss_bytes", peak_rss_bytes()}, {"test_time", iso_now()}});
            emit_json(j);
          },
          [](const std::string& note) { fmt::print(stderr, "[bench] {}\n", note); });
    }
    mem.peak_rss = peak_rss_bytes();
    memory.push_back(mem);
  }
  if (md) {
    std::printf("\n");
    for (int t : threads)
      if (bw[t].gbs > 0) std::printf("memory bandwidth (%d threads): %.1f GB/s%s\n", bw[t].n_threads, bw[t].gbs,
                                     o.bw_gbs > 0 ? " (given)" : "");
    std::printf("B/token: weights %.1f MB + KV cache %llu bytes/token x depth; BW share = t/s x B/token / bandwidth\n",
                info.bytes_per_token_weights / 1e6, (unsigned long long)info.kv_bytes_per_token);
    if (memory.size() == 1) {
      std::printf("peak RSS: %s (context of %d tokens)\n", human_bytes((double)memory[0].peak_rss).c_str(), last_ctx);
    } else {
      std::printf("peak RSS per policy (context of %d tokens; KV cache allocated, and held at the deepest tg test):\n",
                  last_ctx);
      for (const PolicyMemory& m : memory)
        std::printf("  %-44s peak RSS %10s   KV %10s allocated, %10s held\n", m.kv.c_str(),
                    human_bytes((double)m.peak_rss).c_str(), human_bytes((double)m.kv_bytes).c_str(),
                    human_bytes((double)m.kv_used).c_str());
    }
  }
}

// -p, -n, -d, --pp-depth: token counts; negative ones are an error (they
// used to skip their tests silently).
CLI::Validator token_count_check() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        int64_t n = 0;
        if (!CLI::detail::lexical_cast(value, n) || n < 0) return "must be a token count >= 0, not " + value;
        return {};
      },
      "");
}

CommandRegistrar reg(60, [](CLI::App& root) {
  auto o = std::make_shared<BenchOptions>();
  auto* c = root.add_subcommand("bench", "Measure prefill and decode speed (llama-bench style), memory bandwidth, "
                                         "and the KV-cache speed-up");
  c->add_option("-m,--model", o->model, "GGUF model file (default: the SmolLM2-135M-Instruct Q4_1 model)");
  c->add_option("-p,--n-prompt", o->tests.n_prompt,
                "Prompt-processing tests: tokens evaluated, from an empty cache or at --pp-depth (0 = none)")
      ->delimiter(',')->check(token_count_check())->capture_default_str();
  c->add_option("-n,--n-gen", o->tests.n_gen, "Token-generation tests: single-token decode steps timed (0 = none)")
      ->delimiter(',')->check(token_count_check())->capture_default_str();
  auto* depth = c->add_option("-d,--n-depth", o->tests.n_depth,
                               "Depths of the generation tests: tokens prefilled (not timed) first "
                               "(with --parallel: default 0)")
                    ->delimiter(',')->check(token_count_check())->capture_default_str();
  c->add_option("--pp-depth", o->tests.pp_depth,
                "Depths of the prompt-processing tests: tokens prefilled (not timed) before the timed ones "
                "(ppN @ dD)")
      ->delimiter(',')->check(token_count_check())->capture_default_str();
  c->add_option("-t,--threads", o->n_threads, "Threads, or a list (default: physical cores)")->delimiter(',')
      ->check(thread_count_check());
  c->add_option("-r,--repetitions", o->tests.n_reps, "Repetitions of each test")->check(positive_number())
      ->capture_default_str();
  c->add_option("-b,--batch-size", o->tests.n_batch, "Tokens per forward pass in prefill")->check(positive_number())
      ->capture_default_str();
  c->add_option("-c,--ctx-size", o->tests.n_ctx, "Context size (default: what the largest test needs)")
      ->check(non_negative_number());
  c->add_option("--kv", o->kv, "KV-cache policy (see README: KV-cache policies), or several separated by ';': "
                               "every test runs per policy, and each gets its peak RSS")->capture_default_str();
  c->add_option("--kv-type", o->kv_type, "KV-cache storage precision (f16, f32); overrides the storage part of --kv");
  add_mla_attn_option(*c, o->mla_attn);
  c->add_flag("--no-cache", o->no_cache, "Generation tests without the cache: each token recomputes the whole sequence");
  c->add_option("-o,--output", o->output, "Output format: md or jsonl")->capture_default_str();
  c->add_option("--json-out", o->json_out, "Also write the JSON lines to this file");
  c->add_flag("--bandwidth", o->bandwidth_only, "Only measure and print the memory read bandwidth");
  c->add_option("--bw-gbs", o->bw_gbs, "Use this bandwidth (GB/s) for the BW share instead of measuring it")
      ->check(non_negative_number());
  c->add_option("--bw-size", o->bw_mib, "Buffer of the bandwidth probe, MiB")->check(positive_number())
      ->capture_default_str();
  c->add_option("--cache-speedup", o->cache_speedup,
                "Instead of the tests: generate N tokens with and without the KV cache and report the speed-up");
  c->add_option("--speedup-prompt", o->speedup_prompt, "Prompt tokens for --cache-speedup")
      ->check(positive_number())->capture_default_str();
  c->add_option("--parallel", o->n_parallel,
                "Instead of the tests: decode N sequences together in one batch per step, for each N of a list "
                "(e.g. 1,2,4,8,16), and report the aggregate tokens/s and the speed-up over 1")
      ->delimiter(',')->check(positive_number());
  c->add_flag("--op-times", o->op_times,
              "Instead of the tests: time each op kind of the decode steps (-n at each depth -d, default 0; with -n 0 "
              "the prefills of -p tokens instead) and print ms/token, share of the step, bytes read and GB/s per op; "
              "with --parallel: of the batched steps, per step");
  c->add_option("--seed", o->tests.seed, "Seed of the random token ids")->capture_default_str();
  c->callback([o, depth] {
    if ((!o->n_parallel.empty() || o->op_times) && depth->count() == 0) o->tests.n_depth = {0};
    o->tests.mla_attn = parse_mla_attn(o->mla_attn);
    run_bench_command(*o);
  });
});

}  // namespace
}  // namespace kvforge::cli
