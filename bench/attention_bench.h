#pragma once
// Shared by the attention micro-benchmarks: random f16 rows, a one-segment
// f16 view over them, and the GFLOP/s and GB/s counters.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "ops/kv_view.h"
#include "util/fp16.h"

namespace kvforge::bench {

inline std::vector<fp16_t> random_f16(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<fp16_t> r(n);
  for (auto& x : r) x = fp32_to_fp16(nd(rng));
  return r;
}

// rows rows of K (ks elements apart) and V (dv apart, or inside K when v == k).
inline KvView f16_view(const fp16_t* k, const fp16_t* v, int dk, int dv, size_t ks, bool latent, int rows) {
  KvView w;
  w.storage = KvStorage::F16;
  w.head_dim_k = dk;
  w.head_dim_v = dv;
  w.v_in_k = latent;
  w.k_stride = ks * sizeof(fp16_t);
  w.v_stride = (v == k ? ks : (size_t)dv) * sizeof(fp16_t);
  w.segments[0] = {k, v, rows};
  w.n_segments = 1;
  return w;
}

inline void counters(benchmark::State& st, double flop, double bytes) {
  st.counters["GFLOP/s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace kvforge::bench
