// Matmul micro-benchmarks at SmolLM2-135M shapes (hidden 576, FFN 1536,
// vocab 49152): GEMV (n_tok = 1, decode; reports weight GB/s) and GEMM
// (n_tok = 64 / 512, prefill; reports GFLOP/s). Also a plain 2-thread read
// test that estimates the machine's memory bandwidth for comparison.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu_features.h"
#include "backend/thread_pool.h"
#include "ops/matmul.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"
#include "util/fp16.h"
#include "../tests/unit/test_matrix.h"  // test::fp16_fields

using namespace kvforge;

namespace {

size_t stored_row_bytes(GgmlType t, int64_t cols) { return row_bytes(t, cols); }

void run_matmul(benchmark::State& st, GgmlType t, bool packed) {
  const int64_t rows = st.range(0), cols = st.range(1), n_tok = st.range(2);
  const int threads = (int)st.range(3);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  const size_t rb = stored_row_bytes(t, cols);
  std::vector<uint8_t> data(rb * rows);
  std::vector<float> f(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : f) v = nd(rng);
    if (quantize_row_supported(t)) quantize_row(t, f.data(), data.data() + r * rb, cols);
    else for (size_t i = 0; i < rb; ++i) data[r * rb + i] = (uint8_t)rng();  // K-quants: random blocks
  }
  if (t == GgmlType::Q5_0 || t == GgmlType::IQ4_NL)  // random blocks with a sane scale (d first, fp16)
    for (size_t o = 0; o < data.size(); o += rb / (cols / QK)) {
      const fp16_t d = fp32_to_fp16(0.01f);
      std::memcpy(&data[o], &d, sizeof d);
    }
  WeightMatrix W{t, rows, cols, data.data(), rb};
  std::vector<uint8_t> packed_data;  // [rows/8][...] the load-time x8 layout
  if (packed) {
    packed_data.resize(packed_bytes(W));  // K-quants: more than data (unpacked scales)
    W = pack_matrix(W, packed_data.data());
  }
  std::vector<float> x(n_tok * cols), y(n_tok * rows);
  for (auto& v : x) v = nd(rng);
  ThreadPool pool(threads);
  MatmulScratch scratch;
  for (auto _ : st) {
    matmul(W, x.data(), n_tok, y.data(), pool, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double bytes = (double)rb * rows;
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * rows * cols * n_tok, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tok/s"] = benchmark::Counter((double)n_tok, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = pool.size();
}

void BM_Matmul(benchmark::State& st, GgmlType t) { run_matmul(st, t, false); }
// The layout the model loader uses (ops/weight_pack.h: every packable type).
void BM_MatmulPacked(benchmark::State& st, GgmlType t) { run_matmul(st, t, true); }

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n_tok : {1, 64, 512})
    for (auto [r, c] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}}) {
      if (n_tok == 512 && r == 49152) continue;  // 29 GFLOP per call: too slow to be useful here
      b->Args({r, c, n_tok, 2});
    }
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// A decode step of 1 and 8 sequences (the server's batches) on one thread:
// how much of the per-token work batching saves.
void shapes_decode(benchmark::internal::Benchmark* b) {
  for (int64_t n_tok : {1, 8})
    for (auto [r, c] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}})
      b->Args({r, c, n_tok, 1});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// SmolLM2's tied output head (Q8_0 in its Q4_1 file) at the batched decode
// step's token counts, 1 and 2 threads: streamed from memory, unlike the
// layer matrices of shapes_decode.
void shapes_head(benchmark::internal::Benchmark* b) {
  for (int64_t th : {1, 2})
    for (int64_t n_tok : {1, 2, 4, 8}) b->Args({49152, 576, n_tok, th});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// Prefill on one thread (pp512 of kvforge bench -t 1 runs 64-token
// matmuls): the SmolLM2 projections.
void shapes_prefill1(benchmark::internal::Benchmark* b) {
  for (auto [r, c] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}, {576, 1536}}) b->Args({r, c, 64, 1});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// K-quant rows must hold whole 256-blocks: SmolLM2's 1536-wide down
// projection and a Llama-like 2048x2048.
void shapes_k(benchmark::internal::Benchmark* b) {
  for (int64_t n_tok : {1, 64})
    for (auto [r, c] : {std::pair<int64_t, int64_t>{576, 1536}, {2048, 2048}}) b->Args({r, c, n_tok, 2});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// shapes_prefill1 for the K-quants, whose rows must hold whole 256-blocks:
// the 1536-wide down projection (in SmolLM2's llama.cpp mixes Q3_K_M, Q2_K,
// IQ4_XS the K-quant matrices are these).
void shapes_prefill_k(benchmark::internal::Benchmark* b) {
  b->Args({576, 1536, 64, 1});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// GPT-2 124M (hidden 768, FFN 3072; QKV fused to 2304 rows) on 1 and 2
// threads: the F16 and BF16 prefill GEMMs.
void shapes_gpt2(benchmark::internal::Benchmark* b) {
  for (int64_t th : {1, 2})
    for (int64_t n_tok : {1, 64})
      for (auto [r, c] : {std::pair<int64_t, int64_t>{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}})
        b->Args({r, c, n_tok, th});
  b->ArgNames({"rows", "cols", "ntok", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// A [rows][cols] matrix of type t in the packed layout (its bytes in packed):
// random blocks with finite fp16 factors (1e-3), as the kernels meet them.
WeightMatrix random_packed(GgmlType t, int64_t rows, int64_t cols, std::mt19937_64& rng,
                           std::vector<uint8_t>& packed) {
  const size_t rb = row_bytes(t, cols);
  std::vector<uint8_t> data(rb * rows);  // [rows][rb]
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  const size_t bb = type_traits(t).block_bytes;
  const fp16_t d = fp32_to_fp16(1e-3f);
  for (size_t o = 0; o < data.size(); o += bb)
    for (size_t off : test::fp16_fields(t)) std::memcpy(&data[o + off], &d, 2);
  const WeightMatrix plain{t, rows, cols, data.data(), rb};
  packed.resize(packed_bytes(plain));  // ops/weight_pack.h
  return pack_matrix(plain, packed.data());
}

// Single-token decode on one thread, per weight type, in the packed layout
// the loader makes: a matrix of 131072 x 1536 (55-214 MB, past the 32 MiB
// L3 of the development machine, like a model's weights in a decode step),
// so GB/s is the kernel's streaming rate against BM_ReadBandwidth/1; and
// 256 x 1536 (within L2: the kernel's compute rate, the bound it puts on
// that stream). Random blocks (the timing does not depend on the values)
// with finite fp16 factors. Rates per CPU second: on a shared machine
// those move less than wall-clock ones.
// level: the SIMD level to run at (clamped to the CPU's), so that one
// machine compares its AVX-512 and AVX2 kernels on the same matrix.
void BM_Decode1(benchmark::State& st, GgmlType t, SimdLevel level = SimdLevel::AVX512) {
  const SimdLevel saved = simd_level();
  set_simd_level(level);
  const int64_t rows = st.range(0), cols = st.range(1);
  const size_t rb = row_bytes(t, cols);
  std::mt19937_64 rng(1);
  std::vector<uint8_t> packed;
  const WeightMatrix W = random_packed(t, rows, cols, rng, packed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(cols), y(rows);
  for (auto& v : x) v = nd(rng);
  ThreadPool pool(1);
  MatmulScratch scratch;
  for (auto _ : st) {
    matmul(W, x.data(), 1, y.data(), pool, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter((double)rb * rows, benchmark::Counter::kIsIterationInvariantRate);
  set_simd_level(saved);
}

// Prefill GEMM (64 tokens, 1 thread: one task of a pp512) of every packed
// quantized type at a given SIMD level (the `level` argument: 1 AVX2, 2
// AVX-512; clamped to what the CPU has), so the kernels of two levels,
// bit-identical by contract, can be timed against each other on one
// machine. Random blocks with finite fp16 factors, as BM_Decode1.
void BM_PrefillLevel(benchmark::State& st, GgmlType t) {
  const int64_t rows = st.range(0), cols = st.range(1), n_tok = st.range(2);
  const SimdLevel saved = simd_level();
  set_simd_level((SimdLevel)st.range(3));
  const SimdLevel level = simd_level();
  std::mt19937_64 rng(1);
  std::vector<uint8_t> packed;
  const WeightMatrix W = random_packed(t, rows, cols, rng, packed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(n_tok * cols), y(n_tok * rows);
  for (auto& v : x) v = nd(rng);
  ThreadPool pool(1);
  MatmulScratch scratch;
  for (auto _ : st) {
    matmul(W, x.data(), n_tok, y.data(), pool, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_simd_level(saved);
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * rows * cols * n_tok, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["level"] = (double)level;
}

// 32-element-block types at the 576-wide projections, K-quants and IQ4_XS
// at the 1536-wide down projection; AVX2 and AVX-512.
void shapes_level32(benchmark::internal::Benchmark* b) {
  for (int64_t level : {1, 2}) b->Args({1536, 576, 64, level});
  b->ArgNames({"rows", "cols", "ntok", "level"})->Unit(benchmark::kMicrosecond);
}
void shapes_levelk(benchmark::internal::Benchmark* b) {
  for (int64_t level : {1, 2}) b->Args({576, 1536, 64, level});
  b->ArgNames({"rows", "cols", "ntok", "level"})->Unit(benchmark::kMicrosecond);
}

void shapes_decode1(benchmark::internal::Benchmark* b) {
  b->Args({131072, 1536})->Args({256, 1536});
  b->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);
}

// F16 and BF16 at GPT-2's width: 163840 x 768 is 252 MB, about the GPT-2
// 124M shape's weights (what one decode step streams).
void shapes_decode1_f16(benchmark::internal::Benchmark* b) {
  b->Args({163840, 768})->Args({256, 768});
  b->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);
}

// Streams a 256 MiB buffer with n threads (sum of 64-bit words): the
// read bandwidth a memory-bound GEMV can at best reach.
void BM_ReadBandwidth(benchmark::State& st) {
  const size_t n = (256u << 20) / 8;
  std::vector<uint64_t> buf(n, 1);
  ThreadPool pool((int)st.range(0));
  const int64_t chunks = 256;
  std::vector<uint64_t> sums(chunks);
  for (auto _ : st) {
    pool.parallel_for(chunks, [&](int64_t c, int) {
      const uint64_t* p = buf.data() + c * (n / chunks);
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = 0; i < n / chunks; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
      sums[c] = s0 + s1 + s2 + s3;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  st.counters["GB/s"] = benchmark::Counter((double)n * 8, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// Each runs the kernel matmul() dispatches to on this CPU: on AVX-512 the
// VNNI K-quant kernels, and for BF16 the vdpbf16ps one where the CPU has
// AVX512_BF16 (matmul_avx512bf16.cpp).
BENCHMARK_CAPTURE(BM_Matmul, Q4_1, GgmlType::Q4_1)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0, GgmlType::Q8_0)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, F16, GgmlType::F16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q4_1, GgmlType::Q4_1)->Apply(shapes);
BENCHMARK_CAPTURE(BM_MatmulPacked, F16, GgmlType::F16)->Apply(shapes_gpt2);
BENCHMARK_CAPTURE(BM_MatmulPacked, BF16, GgmlType::BF16)->Apply(shapes_gpt2);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q4_1_decode, GgmlType::Q4_1)->Apply(shapes_decode);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q8_0_decode, GgmlType::Q8_0)->Apply(shapes_decode);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q8_0_head, GgmlType::Q8_0)->Apply(shapes_head);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q8_0_prefill, GgmlType::Q8_0)->Apply(shapes_prefill1);
BENCHMARK_CAPTURE(BM_Matmul, BF16, GgmlType::BF16)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Matmul, Q4_K, GgmlType::Q4_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_Matmul, Q5_K, GgmlType::Q5_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_Matmul, Q6_K, GgmlType::Q6_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0_ref, GgmlType::Q8_0)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_Matmul, Q2_K, GgmlType::Q2_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_Matmul, IQ4_XS, GgmlType::IQ4_XS)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q2_K, GgmlType::Q2_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, IQ4_XS, GgmlType::IQ4_XS)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q4_K, GgmlType::Q4_K)->Apply(shapes_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q4_0_prefill, GgmlType::Q4_0)->Apply(shapes_prefill1);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q5_0_prefill, GgmlType::Q5_0)->Apply(shapes_prefill1);
BENCHMARK_CAPTURE(BM_MatmulPacked, IQ4_NL_prefill, GgmlType::IQ4_NL)->Apply(shapes_prefill1);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q3_K_prefill, GgmlType::Q3_K)->Apply(shapes_prefill_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, Q4_K_prefill, GgmlType::Q4_K)->Apply(shapes_prefill_k);
BENCHMARK_CAPTURE(BM_MatmulPacked, IQ4_XS_prefill, GgmlType::IQ4_XS)->Apply(shapes_prefill_k);
BENCHMARK_CAPTURE(BM_Decode1, Q4_1, GgmlType::Q4_1)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q4_0, GgmlType::Q4_0)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q5_0, GgmlType::Q5_0)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q5_1, GgmlType::Q5_1)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, IQ4_NL, GgmlType::IQ4_NL)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q8_0, GgmlType::Q8_0)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q2_K, GgmlType::Q2_K)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q3_K, GgmlType::Q3_K)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q4_K, GgmlType::Q4_K)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q5_K, GgmlType::Q5_K)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q6_K, GgmlType::Q6_K)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, IQ4_XS, GgmlType::IQ4_XS)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, F16, GgmlType::F16)->Apply(shapes_decode1_f16);
BENCHMARK_CAPTURE(BM_Decode1, BF16, GgmlType::BF16)->Apply(shapes_decode1_f16);
// The default model's types, and F16/BF16, on the AVX2 kernels (on an AVX-512 CPU: the other ISA, same machine).
BENCHMARK_CAPTURE(BM_Decode1, Q4_1_avx2, GgmlType::Q4_1, SimdLevel::AVX2)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, Q8_0_avx2, GgmlType::Q8_0, SimdLevel::AVX2)->Apply(shapes_decode1);
BENCHMARK_CAPTURE(BM_Decode1, F16_avx2, GgmlType::F16, SimdLevel::AVX2)->Apply(shapes_decode1_f16);
BENCHMARK_CAPTURE(BM_Decode1, BF16_avx2, GgmlType::BF16, SimdLevel::AVX2)->Apply(shapes_decode1_f16);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q4_0, GgmlType::Q4_0)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q4_1, GgmlType::Q4_1)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q5_0, GgmlType::Q5_0)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q5_1, GgmlType::Q5_1)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, IQ4_NL, GgmlType::IQ4_NL)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q8_0, GgmlType::Q8_0)->Apply(shapes_level32);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q2_K, GgmlType::Q2_K)->Apply(shapes_levelk);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q3_K, GgmlType::Q3_K)->Apply(shapes_levelk);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q4_K, GgmlType::Q4_K)->Apply(shapes_levelk);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q5_K, GgmlType::Q5_K)->Apply(shapes_levelk);
BENCHMARK_CAPTURE(BM_PrefillLevel, Q6_K, GgmlType::Q6_K)->Apply(shapes_levelk);
BENCHMARK_CAPTURE(BM_PrefillLevel, IQ4_XS, GgmlType::IQ4_XS)->Apply(shapes_levelk);
BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
