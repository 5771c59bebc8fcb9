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

#include "ops/attention.h"
#include "util/fp16.h"

using namespace kvforge;

namespace {

constexpr int kRows = 8192;

std::vector<fp16_t> random_rows(size_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<fp16_t> r(n);
  for (auto& x : r) x = fp32_to_fp16(nd(rng));
  return r;
}

KvView f16_view(const fp16_t* k, const fp16_t* v, int dk, int dv, size_t ks, bool latent) {
  KvView w;
  w.storage = KvStorage::F16;
  w.head_dim_k = dk;
  w.head_dim_v = dv;
  w.v_in_k = latent;
  w.k_stride = ks * sizeof(fp16_t);
  w.v_stride = (v == k ? ks : (size_t)dv) * sizeof(fp16_t);
  w.segments[0] = {k, v, kRows};
  w.n_segments = 1;
  return w;
}

void counters(benchmark::State& st, double flop, double bytes) {
  st.counters["GFLOP/s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LatentDecode(benchmark::State& st) {
  const bool all_heads = st.range(0);
  const int dk = 120, dv = 96, heads = 9;
  const auto rows = random_rows((size_t)kRows * dk);
  const std::vector<float> q((size_t)heads * dk, 0.05f);
  std::vector<float> out((size_t)heads * dv);
  const KvView v = f16_view(rows.data(), rows.data(), dk, dv, dk, all_heads);
  for (auto _ : st) {
    attend(q.data(), heads, v, 0.125f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, 2.0 * kRows * heads * (dk + dv), (double)kRows * dk * 2);
}

void BM_GqaDecode(benchmark::State& st) {
  const int d = 64, kv_heads = 3, group = 3;
  const auto k = random_rows((size_t)kv_heads * kRows * d), v = random_rows(k.size());
  const std::vector<float> q((size_t)group * d, 0.05f);
  std::vector<float> out((size_t)group * d);
  for (auto _ : st) {
    for (int h = 0; h < kv_heads; ++h) {
      const size_t off = (size_t)h * kRows * d;
      attend(q.data(), group, f16_view(&k[off], &v[off], d, d, d, false), 0.125f, out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, 2.0 * kRows * kv_heads * group * 2 * d, (double)kRows * kv_heads * 2 * d * 2);
}

}  // namespace

BENCHMARK(BM_LatentDecode)->ArgName("all_heads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GqaDecode)->Unit(benchmark::kMillisecond);
