// Attention at depth with SmolLM2-135M's shape (3 KV heads x 3 query heads,
// 64 + 64 values per head, f16 cache), one thread:
//  - GqaDecodeDepth: one token over `depth` cached rows of every one of
//    `layers` layers (30 x 2048 rows = 47 MB: the cache streams from DRAM as
//    in a real decode step at depth 2048, not from L3);
//  - GqaPrefillDepth: prefill's attention of 16 consecutive tokens at
//    positions depth..depth+15 (attend_tokens, 48 query heads per KV head).
// Reports GB/s of cached rows read and GFLOP/s (2 per multiply-add of the
// scores and of the V sums).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "ops/attention.h"
#include "util/fp16.h"

using namespace kvforge;

namespace {

constexpr int kDim = 64, kKvHeads = 3, kGroup = 3;

std::vector<fp16_t> random_f16(size_t n) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  std::vector<fp16_t> r(n);
  for (auto& x : r) x = fp32_to_fp16(nd(rng));
  return r;
}

KvView head_view(const fp16_t* k, const fp16_t* v, int rows) {
  KvView w;
  w.storage = KvStorage::F16;
  w.head_dim_k = w.head_dim_v = kDim;
  w.k_stride = w.v_stride = kDim * sizeof(fp16_t);
  w.segments[0] = {k, v, rows};
  w.n_segments = 1;
  return w;
}

void counters(benchmark::State& st, double flop, double bytes) {
  st.counters["GFLOP/s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_GqaDecodeDepth(benchmark::State& st) {
  const int depth = (int)st.range(0), layers = (int)st.range(1);
  const size_t per_head = (size_t)depth * kDim;
  const auto k = random_f16(per_head * kKvHeads * layers), v = random_f16(k.size());
  std::vector<float> q((size_t)kGroup * kDim, 0.05f), out(q.size());
  for (auto _ : st) {
    for (int l = 0; l < layers; ++l)
      for (int h = 0; h < kKvHeads; ++h) {
        const size_t off = (size_t)(l * kKvHeads + h) * per_head;
        attend(q.data(), kGroup, head_view(&k[off], &v[off], depth), 0.125f, out.data());
      }
    benchmark::DoNotOptimize(out.data());
  }
  const double rows = (double)depth * kKvHeads * layers;
  counters(st, rows * kGroup * 4.0 * kDim, rows * 2 * kDim * sizeof(fp16_t));
}

void BM_GqaPrefillDepth(benchmark::State& st) {
  const int depth = (int)st.range(0), n_tok = kAttnMaxTokens, rows = depth + n_tok;
  const auto k = random_f16((size_t)rows * kDim), v = random_f16(k.size());
  std::vector<float> q((size_t)n_tok * kGroup * kDim, 0.05f), out(q.size());
  const float* qs[kAttnMaxTokens];
  float* outs[kAttnMaxTokens];
  KvView views[kAttnMaxTokens];
  for (int i = 0; i < n_tok; ++i) {
    qs[i] = &q[(size_t)i * kGroup * kDim];
    outs[i] = &out[(size_t)i * kGroup * kDim];
    views[i] = head_view(k.data(), v.data(), depth + i + 1);
  }
  for (auto _ : st) {
    attend_tokens(qs, views, n_tok, kGroup, 0.125f, outs);
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, (double)rows * n_tok * kGroup * 4.0 * kDim, (double)rows * 2 * kDim * sizeof(fp16_t));
}

}  // namespace

BENCHMARK(BM_GqaDecodeDepth)->ArgNames({"depth", "layers"})->Args({2048, 30})->Args({512, 30})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GqaPrefillDepth)->ArgName("depth")->Arg(2048)->Unit(benchmark::kMicrosecond);
