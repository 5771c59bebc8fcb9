#include "eval/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "eval/progress_bar.h"
#include "model/context.h"
#include "util/error.h"

namespace kvforge {

namespace {

using clock_type = std::chrono::steady_clock;

double elapsed_ns(clock_type::time_point t0) {
  return (double)std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
}

uint64_t matrix_bytes(const WeightMatrix& w) { return w.data ? (uint64_t)w.rows * w.row_stride : 0; }
uint64_t vec_bytes(const Vec& v) { return v.size() * sizeof(float); }

// "135M", "1.7B": the short parameter count llama.cpp puts in model_type.
std::string short_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.1f}B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.0f}M", n / 1e6);
  return fmt::format("{:.0f}K", n / 1e3);
}

std::vector<TokenId> random_tokens(std::mt19937_64& rng, int32_t n, int32_t n_vocab) {
  std::uniform_int_distribution<int32_t> dist(0, n_vocab - 1);
  std::vector<TokenId> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

int argmax(const std::vector<float>& v) { return (int)(std::max_element(v.begin(), v.end()) - v.begin()); }

void finish(BenchResult& r, int32_t n_tokens) {
  for (double ns : r.samples_ns) r.samples_ts.push_back(n_tokens * 1e9 / ns);
  r.avg_ns = mean_of(r.samples_ns);
  r.stddev_ns = stddev_of(r.samples_ns);
  r.avg_ts = mean_of(r.samples_ts);
  r.stddev_ts = stddev_of(r.samples_ts);
}

}  // namespace

ContextParams BenchParams::context(int32_t n_ctx_needed) const {
  ContextParams cp;
  cp.n_ctx = n_ctx > 0 ? n_ctx : n_ctx_needed;
  cp.n_batch = n_batch;
  cp.n_threads = n_threads;
  cp.kv = kv;
  cp.mla_attn = mla_attn;
  return cp;
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

double stddev_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1));
}

BenchModelInfo describe_for_bench(const Model& model, const std::string& filename, const KvPolicy& kv) {
  BenchModelInfo info;
  info.filename = filename;
  const ModelConfig& c = model.config();
  std::map<GgmlType, uint64_t> bytes_by_type;  // of the matrices: names the file's main type
  for (const auto& t : model.file().tensors()) {
    info.size += t.nbytes;
    info.n_params += (uint64_t)t.n_elements();
    if (t.n_dims >= 2) bytes_by_type[t.type] += t.nbytes;
  }
  GgmlType main = GgmlType::F32;
  uint64_t best = 0;
  for (const auto& [type, b] : bytes_by_type)
    if (b > best) best = b, main = type;
  info.type = fmt::format("{} {} {}", c.arch, short_count(info.n_params), type_traits(main).name);

  // One decode step reads every layer matrix, the norms, the output matrix
  // and one row of each embedding table (all of the token table when the
  // output is tied to it: then it is counted once, as the output). Of the
  // routed experts only the n_expert_used a token selects are read.
  const ModelWeights& w = model.weights();
  uint64_t b = 0;
  for (const auto& L : w.layers) {
    for (const WeightMatrix* m : L.matrices()) b += matrix_bytes(*m);
    uint64_t experts = 0;
    for (const auto* v : {&L.moe.gate, &L.moe.up, &L.moe.down})
      for (const WeightMatrix& m : *v) experts += matrix_bytes(m);
    if (experts > 0) b -= experts - experts * c.moe.n_expert_used / c.moe.n_expert;
    for (const Vec* v : {&L.attn_norm, &L.attn_norm_b, &L.bq, &L.bk, &L.bv, &L.bo, &L.ffn_norm, &L.ffn_norm_b,
                         &L.b_up, &L.b_down})
      b += vec_bytes(*v);
  }
  b += vec_bytes(w.out_norm) + vec_bytes(w.out_norm_b) + matrix_bytes(w.output);
  if (w.output.data != w.tok_embd.data) b += w.tok_embd.row_stride;
  if (w.pos_embd.data) b += w.pos_embd.row_stride;
  info.bytes_per_token_weights = b;

  // A token's rows depend on the storage only (a one-cell cache of an
  // eviction budget or a window would not even fit).
  info.kv_bytes_per_token = make_kv_cache(KvPolicy{0, 0, kv.storage, kv.hadamard}, c.kv_shape(), 1)->bytes_per_token();
  return info;
}

void run_bench(const Model& model, const BenchParams& params,
               const std::function<void(const BenchResult&)>& on_result,
               const std::function<void(const std::string&)>& on_note) {
  const ModelConfig& c = model.config();
  const bool learned = c.position == PositionKind::Learned;
  const int32_t max_pos = learned ? c.n_ctx_train : INT32_MAX;

  struct Test {
    int32_t n_prompt, n_gen, n_depth;
    int64_t needs() const { return (int64_t)n_depth + (n_gen > 0 ? n_gen : n_prompt); }
    // llama-bench's names: "pp512", "pp512 @ d2048", "tg128 @ d0".
    std::string name() const {
      if (n_gen > 0) return fmt::format("tg{} @ d{}", n_gen, n_depth);
      return n_depth > 0 ? fmt::format("pp{} @ d{}", n_prompt, n_depth) : fmt::format("pp{}", n_prompt);
    }
  };
  std::vector<Test> tests;
  for (int32_t d : params.pp_depth)
    for (int32_t p : params.n_prompt)
      if (p > 0 && d >= 0) tests.push_back({p, 0, d});
  for (int32_t d : params.n_depth)
    for (int32_t n : params.n_gen)
      if (n > 0 && d >= 0) tests.push_back({0, n, d});
  int64_t n_ctx = params.n_ctx;
  std::vector<Test> runnable;
  for (const Test& t : tests) {
    const int64_t limit = params.n_ctx > 0 ? std::min<int64_t>(params.n_ctx, max_pos) : max_pos;
    if (t.needs() > limit) {
      on_note(fmt::format("skipping {}: needs {} positions, the {} allows {}", t.name(), t.needs(),
                          params.n_ctx > 0 && params.n_ctx < max_pos ? "context size (-c)" : "model",
                          limit));
      continue;
    }
    runnable.push_back(t);
    if (params.n_ctx <= 0) n_ctx = std::max(n_ctx, t.needs());
  }
  if (runnable.empty()) return;

  Context ctx(model, params.context((int32_t)std::max<int64_t>(n_ctx, 1)));
  const int32_t n_vocab = c.n_vocab;
  std::vector<float> logits(n_vocab);
  std::mt19937_64 rng(params.seed);
  const uint64_t kv_bpt = ctx.cache().bytes_per_token();
  const auto progress = prefill_progress("prefill");  // long pp tests and depths

  // Warm-up, once: pages the mapped weights in, grows the scratch buffers
  // and wakes the thread pool.
  {
    int32_t n_warm = 1;
    for (const Test& t : runnable) n_warm = std::max(n_warm, std::min(t.n_prompt, params.n_batch));
    const auto warm = random_tokens(rng, n_warm, n_vocab);
    ctx.eval(warm.data(), n_warm, logits.data());
    if (ctx.n_past() < ctx.n_ctx()) ctx.eval(warm.data(), 1, logits.data());
    ctx.reset();
  }

  for (const Test& t : runnable) {
    BenchResult r;
    r.n_prompt = t.n_prompt;
    r.n_gen = t.n_gen;
    r.n_depth = t.n_depth;
    r.n_threads = ctx.n_threads();
    r.n_batch = params.n_batch;
    r.n_ctx = ctx.n_ctx();
    r.use_cache = t.n_gen == 0 || params.use_cache;
    r.name = t.name() + (r.use_cache ? "" : " (no cache)");
    if (t.n_gen > 0) {
      r.bytes_per_token_cache = kv_bpt * (uint64_t)t.n_depth;  // measured below once the depth is cached
    }
    r.kv_bytes = ctx.cache().bytes();
    for (int rep = 0; rep < std::max(1, params.n_reps); ++rep) {
      ctx.reset();
      if (r.use_cache && t.n_depth > 0) {  // the depth, cached untimed (pp and tg tests alike)
        const auto depth = random_tokens(rng, t.n_depth, n_vocab);
        ctx.eval(depth.data(), t.n_depth, logits.data(), false, progress);
      }
      if (t.n_gen == 0) {
        const auto toks = random_tokens(rng, t.n_prompt, n_vocab);
        const auto t0 = clock_type::now();
        ctx.eval(toks.data(), t.n_prompt, logits.data(), false, progress);
        r.samples_ns.push_back(elapsed_ns(t0));
      } else if (r.use_cache) {
        // What a decode step reads: bytes/token x depth, less for heads
        // whose window is shorter than the depth.
        r.bytes_per_token_cache = ctx.cache().bytes_used();
        const auto toks = random_tokens(rng, t.n_gen, n_vocab);
        const auto t0 = clock_type::now();
        for (int32_t i = 0; i < t.n_gen; ++i) ctx.eval(&toks[i], 1, logits.data());
        r.samples_ns.push_back(elapsed_ns(t0));
      } else {
        std::vector<TokenId> seq = random_tokens(rng, t.n_depth + t.n_gen, n_vocab);
        const auto t0 = clock_type::now();
        for (int32_t i = 0; i < t.n_gen; ++i) {  // step i sees depth + i + 1 tokens, from scratch
          ctx.reset();
          ctx.eval(seq.data(), t.n_depth + i + 1, logits.data());
        }
        r.samples_ns.push_back(elapsed_ns(t0));
      }
    }
    finish(r, t.n_gen > 0 ? t.n_gen : t.n_prompt);
    on_result(r);
  }
}

CacheSpeedup run_cache_speedup(const Model& model, const BenchParams& params, int32_t n_new, int32_t n_prompt) {
  if (n_new <= 0 || n_prompt <= 0) fail("--cache-speedup needs a positive number of new tokens and prompt tokens");
  const ModelConfig& c = model.config();
  Context ctx(model, params.context(n_prompt + n_new));
  std::mt19937_64 rng(params.seed);
  const std::vector<TokenId> prompt = random_tokens(rng, n_prompt, c.n_vocab);
  std::vector<float> logits(c.n_vocab);

  // Warm-up (pages the weights in, grows the buffers).
  ctx.eval(prompt.data(), n_prompt, logits.data());
  ctx.reset();

  CacheSpeedup s;
  s.n_prompt = n_prompt;
  s.n_new = n_new;
  s.n_threads = ctx.n_threads();
  // With the cache: the prompt once, then one token per step. n_new tokens
  // need n_new forward passes (the prompt pass yields the first).
  std::vector<TokenId> with_cache;
  auto t0 = clock_type::now();
  ctx.eval(prompt.data(), n_prompt, logits.data());
  for (int32_t i = 0; i < n_new; ++i) {
    with_cache.push_back(argmax(logits));
    if (i + 1 < n_new) ctx.eval(&with_cache.back(), 1, logits.data());
  }
  s.seconds_cache = elapsed_ns(t0) / 1e9;

  // Without: every step runs the whole sequence from an empty cache.
  std::vector<TokenId> seq = prompt;
  std::vector<TokenId> without;
  t0 = clock_type::now();
  for (int32_t i = 0; i < n_new; ++i) {
    ctx.reset();
    ctx.eval(seq.data(), (int32_t)seq.size(), logits.data());
    without.push_back(argmax(logits));
    seq.push_back(without.back());
  }
  s.seconds_no_cache = elapsed_ns(t0) / 1e9;

  s.ts_cache = n_new / s.seconds_cache;
  s.ts_no_cache = n_new / s.seconds_no_cache;
  s.speedup = s.ts_cache / s.ts_no_cache;
  s.identical = with_cache == without;
  return s;
}

uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      uint64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  return (bool)out.flush();
}

}  // namespace kvforge
