#include "eval/bench_op_times.h"

#include <array>
#include <random>

#include "eval/progress_bar.h"
#include "model/context.h"
#include "util/error.h"
#include "util/op_timer.h"

namespace kvforge {

namespace {

uint64_t matrix_bytes(const WeightMatrix& w) { return w.data ? (uint64_t)w.rows * w.row_stride : 0; }

// Weight bytes a decode step reads per matmul role (0 where a role's
// matrices live elsewhere, e.g. MLA or MoE blocks, timed as a whole).
std::array<uint64_t, (int)Op::kCount> weight_bytes_by_op(const Model& model) {
  std::array<uint64_t, (int)Op::kCount> b{};
  const ModelWeights& w = model.weights();
  for (const LayerWeights& L : w.layers) {
    b[(int)Op::QkvMatmul] += matrix_bytes(L.wq) + matrix_bytes(L.wk) + matrix_bytes(L.wv);
    b[(int)Op::OMatmul] += matrix_bytes(L.wo);
    b[(int)Op::GateUpMatmul] += matrix_bytes(L.w_gate) + matrix_bytes(L.w_up);
    b[(int)Op::DownMatmul] += matrix_bytes(L.w_down);
  }
  b[(int)Op::OutputMatmul] = matrix_bytes(w.output);
  b[(int)Op::Embed] = w.tok_embd.row_stride + (w.pos_embd.data ? w.pos_embd.row_stride : 0);
  return b;
}

}  // namespace

OpTimesResult run_op_times(const Model& model, const BenchParams& params, int32_t n_depth, int32_t n_gen,
                           int32_t n_prompt) {
  if (n_gen <= 0 && n_prompt <= 0) fail("--op-times needs decode steps (-n) or a prompt (-p)");
  const bool prefill = n_gen <= 0;
  const int32_t n_new = prefill ? n_prompt : n_gen;
  const ModelConfig& c = model.config();
  if (c.position == PositionKind::Learned && (int64_t)n_depth + n_new > c.n_ctx_train)
    fail("--op-times: depth {} + {} tokens exceed the {} learned positions of this model", n_depth, n_new,
         c.n_ctx_train);
  const ContextParams cp = params.context(n_depth + n_new);
  Context ctx(model, cp);
  std::mt19937_64 rng(params.seed);
  std::uniform_int_distribution<int32_t> dist(0, c.n_vocab - 1);
  std::vector<TokenId> toks(std::max(n_depth, n_new));
  std::vector<float> logits(c.n_vocab);
  const auto progress = prefill_progress("prefill");

  // Warm-up: pages the weights in, grows the buffers, wakes the pool.
  toks[0] = dist(rng);
  ctx.eval(toks.data(), 1, logits.data());

  OpTimer timer;
  int64_t wall_ns = 0, steps = 0, passes = 0;
  uint64_t kv_bytes = 0;  // KV bytes read, summed over the steps (decode)
  const uint64_t kv_bpt = ctx.cache().bytes_per_token();
  auto timed_eval = [&](const TokenId* t, int32_t n) {  // the timer on for this call only
    ctx.set_op_timer(&timer);
    const int64_t t0 = OpTimer::now();
    ctx.eval(t, n, logits.data());
    wall_ns += OpTimer::now() - t0;
    ctx.set_op_timer(nullptr);
  };
  for (int rep = 0; rep < std::max(1, params.n_reps); ++rep) {
    ctx.reset();
    if (n_depth > 0) {
      for (int32_t i = 0; i < n_depth; ++i) toks[i] = dist(rng);
      ctx.eval(toks.data(), n_depth, logits.data(), false, progress);
    }
    if (prefill) {  // one timed prompt of n_prompt tokens, in forward passes of n_batch
      for (int32_t i = 0; i < n_prompt; ++i) toks[i] = dist(rng);
      timed_eval(toks.data(), n_prompt);
      steps += n_prompt;
      passes += (n_prompt + cp.n_batch - 1) / cp.n_batch;
      continue;
    }
    for (int32_t i = 0; i < n_gen; ++i) toks[i] = dist(rng);
    for (int32_t i = 0; i < n_gen; ++i) {
      kv_bytes += std::min<uint64_t>(ctx.cache().bytes_used() + kv_bpt, kv_bpt * (uint64_t)ctx.n_ctx());
      timed_eval(&toks[i], 1);
      ++steps, ++passes;
    }
  }

  OpTimesResult r = op_times_result(model, timer, wall_ns, steps, kv_bytes, passes);
  r.n_threads = ctx.n_threads();
  r.n_depth = n_depth;
  r.n_gen = prefill ? 0 : n_gen;
  r.n_prompt = prefill ? n_prompt : 0;
  return r;
}

OpTimesResult op_times_result(const Model& model, const OpTimer& timer, int64_t wall_ns, int64_t steps,
                              uint64_t kv_bytes, int64_t passes) {
  OpTimesResult r;
  r.ms_per_token = wall_ns / 1e6 / steps;
  std::array<uint64_t, (int)Op::kCount> bytes = weight_bytes_by_op(model);
  if (passes >= 0)  // each forward pass reads the weights once, shared by its tokens
    for (uint64_t& b : bytes) b = b * passes / steps;
  bytes[(int)Op::Attention] = kv_bytes / steps;
  int64_t timed = 0;
  auto row = [&](std::string name, double calls, int64_t ns, uint64_t b) {
    OpTimesRow o;
    o.op = std::move(name);
    o.calls = calls / steps;
    o.ms = ns / 1e6 / steps;
    o.share = wall_ns > 0 ? (double)ns / wall_ns : 0;
    o.bytes = b;
    o.gbs = b > 0 && o.ms > 0 ? b / (o.ms * 1e6) : 0;
    r.rows.push_back(o);
  };
  for (int k = 0; k < (int)Op::kCount; ++k) {
    if (timer.calls[k] == 0) continue;
    timed += timer.ns[k];
    row(op_name((Op)k), (double)timer.calls[k], timer.ns[k], bytes[k]);
    r.bytes_per_token += bytes[k];
  }
  row("other (untimed)", 0, wall_ns - timed, 0);
  return r;
}

}  // namespace kvforge
