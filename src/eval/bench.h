#pragma once
// `kvforge bench`: llama-bench-style speed tests of one model.
//
//  pp N @ dD   prefill D random tokens (not timed), then time evaluating N
//              more (prefill speed at depth D; "pp N" when D = 0)
//  tg N @ dD   prefill D random tokens (not timed), then time N single-token
//              decode steps (generation speed at depth D); with use_cache =
//              false every step recomputes the whole sequence instead (the
//              cache-off baseline)
//
// Every test is repeated; the report is mean +- sd of tokens/s, plus for
// decode the bytes read per token (weights + the used cache) and the share
// of the measured memory bandwidth that the achieved speed represents.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kv/kv_policy.h"
#include "model/context.h"
#include "model/model.h"

namespace kvforge {

struct BenchParams {
  std::vector<int32_t> n_prompt{128, 512};  // pp tests (0 entries are skipped)
  std::vector<int32_t> n_gen{128};          // tg tests
  std::vector<int32_t> n_depth{0, 512, 2048, 8192};  // depths of the tg tests
  std::vector<int32_t> pp_depth{0};                   // depths of the pp tests
  int n_threads = 0;     // 0 = physical cores
  int n_reps = 3;
  int32_t n_batch = 512; // tokens per forward pass in prefill
  int32_t n_ctx = 0;     // 0 = the largest test needs (one context serves every test)
  KvPolicy kv;
  bool use_cache = true; // false: tg tests recompute the sequence every step
  uint64_t seed = 1234;  // random token ids
  MlaAttn mla_attn = MlaAttn::Absorbed;  // latent (MLA) attention path

  // The context of these tests: n_batch, n_threads, kv, mla_attn, and n_ctx when -c
  // gave none (else the -c value).
  ContextParams context(int32_t n_ctx_needed) const;
};

// What one decoded token reads, and how the model is described in reports.
struct BenchModelInfo {
  std::string filename;     // path as given
  std::string type;         // e.g. "llama 135M Q4_1" (llama-bench's model_type)
  uint64_t size = 0;        // bytes of all tensors
  uint64_t n_params = 0;
  uint64_t bytes_per_token_weights = 0;  // weight bytes one decode step reads
  uint64_t kv_bytes_per_token = 0;       // cache bytes per cached token
};
BenchModelInfo describe_for_bench(const Model& model, const std::string& filename, const KvPolicy& kv);

struct BenchResult {
  std::string name;  // "pp512", "pp512 @ d2048", "tg128 @ d512", "tg128 @ d512 (no cache)"
  int32_t n_prompt = 0, n_gen = 0, n_depth = 0;
  int n_threads = 0;
  int32_t n_batch = 0, n_ctx = 0;
  bool use_cache = true;
  std::vector<double> samples_ns;  // one per repetition
  std::vector<double> samples_ts;  // tokens/s per repetition
  double avg_ns = 0, stddev_ns = 0, avg_ts = 0, stddev_ts = 0;
  uint64_t bytes_per_token_cache = 0;  // KV bytes a decode step reads at the depth (tg tests)
  uint64_t kv_bytes = 0;               // KV cache allocated (the context serves every test)
  bool is_tg() const { return n_gen > 0; }
};

// Runs every test of params on one context (sized for the largest test);
// on_result is called as each finishes. Tests that cannot fit the model
// (learned positions) are skipped with a note through on_note.
void run_bench(const Model& model, const BenchParams& params,
               const std::function<void(const BenchResult&)>& on_result,
               const std::function<void(const std::string&)>& on_note);

// The cache speed-up demonstration: n_new tokens generated greedily after a
// random prompt of n_prompt tokens, with the cache (prefill + one token per
// step) and without (the whole sequence recomputed per step).
struct CacheSpeedup {
  int32_t n_prompt = 0, n_new = 0;
  int n_threads = 0;
  double seconds_cache = 0, seconds_no_cache = 0;
  double ts_cache = 0, ts_no_cache = 0;  // n_new / seconds
  double speedup = 0;
  bool identical = false;  // the two runs chose the same tokens
};
CacheSpeedup run_cache_speedup(const Model& model, const BenchParams& params, int32_t n_new, int32_t n_prompt);

// Peak resident set size of this process (VmHWM), and a reset of that peak
// (so a probe that freed its buffer does not count); 0 / false where
// /proc does not offer them.
uint64_t peak_rss_bytes();
bool reset_peak_rss();

// Mean and sample standard deviation (n-1), as llama-bench reports them.
double mean_of(const std::vector<double>& v);
double stddev_of(const std::vector<double>& v);

}  // namespace kvforge
