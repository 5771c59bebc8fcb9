#pragma once
// `kvforge bench --parallel N,...`: aggregate decode speed of N sequences
// stepped together in one batch (what the server's continuous batching does
// at every step), against one sequence alone.
//
// Per depth D and length G: one sequence prefills D random tokens (not
// timed), N-1 forks share that prefix (as the server's prefix cache shares a
// system prompt), then G steps each run one random token of every sequence
// through one forward pass, logits for all N (the server samples each).
// Aggregate tokens/s = N * G / seconds.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/bench.h"
#include "eval/bench_op_times.h"

namespace kvforge {

struct ParallelBenchResult {
  std::string name;  // "tg128 x8 @ d0"
  int32_t n_seq = 0, n_gen = 0, n_depth = 0;
  int n_threads = 0;
  std::vector<double> samples_ts;  // aggregate tokens/s per repetition
  double avg_ts = 0, stddev_ts = 0;
  double speedup = 0;  // avg_ts over the 1-sequence avg_ts at this depth (0: 1 is not in the list)
  OpTimesResult ops;   // op_times: where the steps of all repetitions went, per step (else no rows)
};

// params: n_gen, n_depth, n_reps, n_threads, n_batch (at least the largest
// N), kv (full-history policies: the paged cache), seed. n_parallel: the
// sequence counts; 1 first when listed, so the others get their speed-up.
// op_times: an OpTimer (util/op_timer.h) runs over the timed steps, so the
// speeds include its small cost.
void run_parallel_bench(const Model& model, const BenchParams& params, std::vector<int32_t> n_parallel,
                        const std::function<void(const ParallelBenchResult&)>& on_result, bool op_times = false);

}  // namespace kvforge
