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

#include "attention_bench.h"
#include "backend/cpu_features.h"
#include "ops/attention.h"
#include "util/fp16.h"

using namespace kvforge;
using namespace kvforge::bench;

namespace {

constexpr int kDim = 64, kKvHeads = 3, kGroup = 3;

// level (the third argument, 1 AVX2, 2 AVX-512; clamped to the CPU's): the
// kernel level, so one machine times both (bit-identical) kernels.
void BM_GqaDecodeDepth(benchmark::State& st) {
  const int depth = (int)st.range(0), layers = (int)st.range(1);
  const SimdLevel saved = simd_level();
  set_simd_level((SimdLevel)st.range(2));
  const size_t per_head = (size_t)depth * kDim;
  const auto k = random_f16(per_head * kKvHeads * layers, 5), v = random_f16(k.size(), 6);
  std::vector<float> q((size_t)kGroup * kDim, 0.05f), out(q.size());
  for (auto _ : st) {
    for (int l = 0; l < layers; ++l)
      for (int h = 0; h < kKvHeads; ++h) {
        const size_t off = (size_t)(l * kKvHeads + h) * per_head;
        attend(q.data(), kGroup, f16_view(&k[off], &v[off], kDim, kDim, kDim, false, depth), 0.125f, out.data());
      }
    benchmark::DoNotOptimize(out.data());
  }
  set_simd_level(saved);
  const double rows = (double)depth * kKvHeads * layers;
  counters(st, rows * kGroup * 4.0 * kDim, rows * 2 * kDim * sizeof(fp16_t));
}

void BM_GqaPrefillDepth(benchmark::State& st) {
  const int depth = (int)st.range(0), n_tok = kAttnMaxTokens, rows = depth + n_tok;
  const auto k = random_f16((size_t)rows * kDim, 5), v = random_f16(k.size(), 6);
  std::vector<float> q((size_t)n_tok * kGroup * kDim, 0.05f), out(q.size());
  const float* qs[kAttnMaxTokens];
  float* outs[kAttnMaxTokens];
  KvView views[kAttnMaxTokens];
  for (int i = 0; i < n_tok; ++i) {
    qs[i] = &q[(size_t)i * kGroup * kDim];
    outs[i] = &out[(size_t)i * kGroup * kDim];
    views[i] = f16_view(k.data(), v.data(), kDim, kDim, kDim, false, depth + i + 1);
  }
  for (auto _ : st) {
    attend_tokens(qs, views, n_tok, kGroup, 0.125f, outs);
    benchmark::DoNotOptimize(out.data());
  }
  counters(st, (double)rows * n_tok * kGroup * 4.0 * kDim, (double)rows * 2 * kDim * sizeof(fp16_t));
}

}  // namespace

BENCHMARK(BM_GqaDecodeDepth)->ArgNames({"depth", "layers", "level"})
    ->Args({2048, 30, 2})->Args({512, 30, 2})->Args({2048, 30, 1})->Args({512, 30, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GqaPrefillDepth)->ArgName("depth")->Arg(2048)->Unit(benchmark::kMicrosecond);
