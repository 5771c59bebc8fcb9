#include "eval/bench_parallel.h"

#include <algorithm>
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "eval/progress_bar.h"
#include "kv/paged_cache.h"
#include "model/context.h"
#include "util/error.h"
#include "util/op_timer.h"

namespace kvforge {

void run_parallel_bench(const Model& model, const BenchParams& params, std::vector<int32_t> n_parallel,
                        const std::function<void(const ParallelBenchResult&)>& on_result, bool op_times) {
  const ModelConfig& c = model.config();
  std::sort(n_parallel.begin(), n_parallel.end());
  n_parallel.erase(std::unique(n_parallel.begin(), n_parallel.end()), n_parallel.end());
  if (n_parallel.empty() || n_parallel.front() <= 0) fail("--parallel takes sequence counts >= 1");
  const int32_t max_seq = n_parallel.back();
  if (max_seq > params.n_batch) fail("--parallel {} needs a batch of at least {} tokens (-b)", max_seq, max_seq);
  int32_t n_ctx = 1;
  for (int32_t d : params.n_depth)
    for (int32_t g : params.n_gen) n_ctx = std::max(n_ctx, d + g);
  if (params.n_ctx > 0) {
    if (params.n_ctx < n_ctx) fail("the deepest test needs a context of {} (-c {})", n_ctx, params.n_ctx);
    n_ctx = params.n_ctx;
  }
  if (c.position == PositionKind::Learned && n_ctx > c.n_ctx_train)
    fail("the deepest test needs {} positions; this model has {}", n_ctx, c.n_ctx_train);

  // Every sequence may hold the whole context, plus its copy of the shared
  // partial block; cached leftovers are evicted as needed.
  ContextParams cp = params.context(n_ctx);
  auto owned = make_paged_cache(c, cp, max_seq, max_seq * PagedKvCache::blocks_for(n_ctx));
  PagedKvCache& cache = *owned;
  Context ctx(model, cp, std::move(owned));
  std::mt19937_64 rng(params.seed);
  std::uniform_int_distribution<TokenId> token(0, c.n_vocab - 1);
  std::vector<float> logits((size_t)max_seq * c.n_vocab);  // [max_seq][n_vocab]
  std::vector<TokenId> step(max_seq);                       // [max_seq] this step's tokens
  const auto progress = prefill_progress("prefill");

  // Steps all n sequences g times, timing their ops into *timer if given;
  // returns the seconds taken.
  auto decode_steps = [&](int32_t n, int32_t g, OpTimer* timer = nullptr) {
    std::vector<BatchRun> runs(n);
    ctx.set_op_timer(timer);
    const auto t0 = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < g; ++i) {
      for (int32_t s = 0; s < n; ++s) {
        step[s] = token(rng);
        runs[s] = {cache.plan_for(s, 1), &step[s], &logits[(size_t)s * c.n_vocab]};
      }
      ctx.decode(runs);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ctx.set_op_timer(nullptr);
    return sec;
  };
  // Sequence 0 back to the depth d, the others forked from it.
  auto fork_all = [&](int32_t n, int32_t d) {
    for (int32_t s = 1; s < max_seq; ++s)
      if (cache.has_sequence(s)) cache.remove_sequence(s);
    cache.truncate(0, d);
    for (int32_t s = 1; s < n; ++s) cache.fork(0, s);
  };

  for (int32_t d : params.n_depth) {
    cache.reset();
    std::vector<TokenId> prefix(d);  // [d]
    for (TokenId& t : prefix) t = token(rng);
    for (int32_t done = 0; done < d;) {
      const int32_t n = std::min(params.n_batch, d - done);
      ctx.decode({{cache.plan_for(0, n), prefix.data() + done, nullptr}});
      done += n;
      if (progress) progress(done, d);
    }
    fork_all(max_seq, d);
    decode_steps(max_seq, 1);  // warm-up: pages, scratch buffers, thread pool
    for (int32_t g : params.n_gen) {
      if (g <= 0) continue;
      // Repetitions alternate over the sequence counts (1, 8, 1, 8, ...), so
      // that a machine whose load drifts shifts every count alike and the
      // speed-ups stay comparable.
      std::vector<ParallelBenchResult> rs(n_parallel.size());
      std::vector<OpTimer> timers(op_times ? n_parallel.size() : 0);
      std::vector<double> seconds(n_parallel.size());
      for (int rep = 0; rep < std::max(1, params.n_reps); ++rep)
        for (size_t i = 0; i < n_parallel.size(); ++i) {
          const int32_t n = n_parallel[i];
          fork_all(n, d);
          const double sec = decode_steps(n, g, op_times ? &timers[i] : nullptr);
          seconds[i] += sec;
          rs[i].samples_ts.push_back((double)n * g / sec);
        }
      double one = 0;
      for (size_t i = 0; i < n_parallel.size(); ++i) {
        ParallelBenchResult& r = rs[i];
        const int32_t n = n_parallel[i];
        r.name = fmt::format("tg{} x{} @ d{}", g, n, d);
        r.n_seq = n;
        r.n_gen = g;
        r.n_depth = d;
        r.n_threads = ctx.n_threads();
        r.avg_ts = mean_of(r.samples_ts);
        r.stddev_ts = stddev_of(r.samples_ts);
        if (n == 1) one = r.avg_ts;
        r.speedup = one > 0 ? r.avg_ts / one : 0;
        if (op_times) {
          // Step i of a repetition reads d + i + 1 cached rows of each sequence.
          const int64_t steps = (int64_t)g * std::max(1, params.n_reps);
          const uint64_t kv_rows = (uint64_t)n * std::max(1, params.n_reps) * ((uint64_t)g * d + (uint64_t)g * (g + 1) / 2);
          r.ops = op_times_result(model, timers[i], (int64_t)(seconds[i] * 1e9), steps,
                                  kv_rows * cache.bytes_per_token());
          r.ops.n_threads = r.n_threads;
          r.ops.n_seq = n;
          r.ops.n_depth = d;
          r.ops.n_gen = g;
        }
        on_result(r);
      }
    }
  }
}

}  // namespace kvforge
