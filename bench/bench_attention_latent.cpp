// Decode attention of one token over 8192 cached rows of one layer, f16, one
// thread: the latent (MLA) cache of a SmolLM2-135M converted at -68.75 % KV
// (rows of 96 + 3 x 8 = 120 values, V = the first 96, 9 query heads) through
// the all-heads tile kernel, the same rows through the per-group kernel GQA
// uses (v_in_k off: 4 heads per pass), and the original's full cache (3 KV
// heads x 3 query heads, 64 + 64 values per head). Reports GFLOP/s
// (2 per multiply-add of the scores and of the V sums) and GB/s of rows read.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "attention_bench.h"
#include "ops/attention.h"
#include "util/fp16.h"

using namespace kvforge;
using namespace kvforge::bench;

namespace {

constexpr int kRows = 8192;

void BM_LatentDecode(benchmark::State& st) {
  const bool all_heads = st.range(0);
  const int dk = 120, dv = 96, heads = 9;
  const auto rows = random_f16((size_t)kRows * dk, 3);
  const std::vector<float> q((size_t)heads * dk, 0.05f);
  std::vector<float> out((size_t)heads * dv);
  const KvView v = f16_view(rows.data(), rows.data(), dk, dv, dk, all_heads, kRows);
  for (auto _ : st) {
    attend(q.data(), heads, v, 0.125f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, 2.0 * kRows * heads * (dk + dv), (double)kRows * dk * 2);
}

void BM_GqaDecode(benchmark::State& st) {
  const int d = 64, kv_heads = 3, group = 3;
  const auto k = random_f16((size_t)kv_heads * kRows * d, 3), v = random_f16(k.size(), 3);
  const std::vector<float> q((size_t)group * d, 0.05f);
  std::vector<float> out((size_t)group * d);
  for (auto _ : st) {
    for (int h = 0; h < kv_heads; ++h) {
      const size_t off = (size_t)h * kRows * d;
      attend(q.data(), group, f16_view(&k[off], &v[off], d, d, d, false, kRows), 0.125f, out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, 2.0 * kRows * kv_heads * group * 2 * d, (double)kRows * kv_heads * 2 * d * 2);
}

}  // namespace

BENCHMARK(BM_LatentDecode)->ArgName("all_heads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GqaDecode)->Unit(benchmark::kMillisecond);
