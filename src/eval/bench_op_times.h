#pragma once
// `kvforge bench --op-times`: where a decode step's time goes. Prefills D
// random tokens, then times single-token decode steps with an OpTimer
// (util/op_timer.h) set on the context: the time of each op kind summed
// over layers, per token, its share of the step, and the bytes it reads
// (weights by matmul role, the used KV cache for attention), so that each
// row gets its own GB/s. With --parallel the same table is kept for the
// batched steps of N sequences (eval/bench_parallel.h), per step.
#include <cstdint>
#include <string>
#include <vector>

#include "eval/bench.h"

namespace kvforge {

struct OpTimesRow {
  std::string op;
  double calls = 0;          // per token (PoolWait: pool jobs)
  double ms = 0;             // per token
  double share = 0;          // of the measured step
  uint64_t bytes = 0;        // read per token (0: not counted)
  double gbs = 0;            // bytes / time (0 when bytes is)
};

struct OpTimesResult {
  int n_threads = 0;
  int32_t n_seq = 1;         // sequences per step (> 1: --parallel; "per token" is then per step)
  int32_t n_depth = 0, n_gen = 0;
  int32_t n_prompt = 0;      // > 0: the table is of prefills of n_prompt tokens (n_gen 0), per prompt token
  double ms_per_token = 0;   // wall time of a decode step
  uint64_t bytes_per_token = 0;  // weights + used KV cache
  std::vector<OpTimesRow> rows;  // op kinds that ran, then "other (untimed)"
};

struct OpTimer;

// The table of a timer that ran over `steps` decode steps taking wall_ns in
// all and reading kv_bytes of cached rows in all; passes: the forward
// passes among them, each reading the weights once (-1: one per step).
OpTimesResult op_times_result(const Model& model, const OpTimer& timer, int64_t wall_ns, int64_t steps,
                              uint64_t kv_bytes, int64_t passes = -1);

// params: n_threads, n_reps (the steps of all repetitions are summed), kv,
// n_batch, seed. One test per depth: n_gen single-token decode steps, or
// (n_gen 0) one prefill of n_prompt tokens, per token.
OpTimesResult run_op_times(const Model& model, const BenchParams& params, int32_t n_depth, int32_t n_gen,
                           int32_t n_prompt = 0);

}  // namespace kvforge
