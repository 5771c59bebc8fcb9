// Window (StreamingLLM) caches: ring arithmetic, exactness against the full
// cache and against a naive reference, batch invariance, cache on/off.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "kv/cell_map.h"
#include "kv/kv_policy.h"
#include "model/context.h"
#include "model/generate.h"
#include "ops/rope.h"
#include "tiny_llama.h"
#include "util/error.h"

namespace kvforge {
namespace {

using test::TinyLlama;

TEST(CellMap, RingKeepsSinksAndTheLastWindow) {
  const CellMap m{5, 2, 7};
  // Positions 0,1 are sinks; 2..6 fill the ring; 7 evicts 2.
  EXPECT_EQ(m.cell(0), 0);
  EXPECT_EQ(m.cell(6), 6);
  EXPECT_EQ(m.cell(7), 2);
  EXPECT_EQ(m.cell(13), 3);
  CellRun r[3];
  ASSERT_EQ(m.runs(4, r), 1);  // not wrapped: one run, like a full cache
  EXPECT_EQ(r[0].first, 0);
  EXPECT_EQ(r[0].n, 5);
  ASSERT_EQ(m.runs(6, r), 1);
  EXPECT_EQ(r[0].n, 7);
  // q = 9 sees 0,1 and 5..9: cells 0,1 | 5,6 | 2,3,4 (positions 5,6,7,8,9).
  ASSERT_EQ(m.runs(9, r), 3);
  EXPECT_EQ(r[0].first, 0);
  EXPECT_EQ(r[0].n, 2);
  EXPECT_EQ(r[1].first, 5);
  EXPECT_EQ(r[1].n, 2);
  EXPECT_EQ(r[2].first, 2);
  EXPECT_EQ(r[2].n, 3);
  // q = 11 sees 7..11 in cells 2..6: the ring is in order again.
  ASSERT_EQ(m.runs(11, r), 2);
  EXPECT_EQ(r[1].first, 2);
  EXPECT_EQ(r[1].n, 5);
  EXPECT_EQ(m.max_wave(0), 7);
  EXPECT_EQ(m.max_wave(3), 4);
  EXPECT_EQ(m.max_wave(7), 1);
  const CellMap no_sinks{4, 0, 4};
  ASSERT_EQ(no_sinks.runs(5, r), 2);  // positions 2..5: cells 2,3 | 0,1
  EXPECT_EQ(r[0].first, 2);
  EXPECT_EQ(r[1].first, 0);
}

// All logits of `tokens` evaluated in batches of `n_batch`.
std::vector<float> eval_logits(const Model& m, const std::string& kv, const std::vector<TokenId>& tokens,
                               int32_t n_batch = 64, int32_t n_ctx = 512, int n_threads = 2) {
  ContextParams p;
  p.n_ctx = n_ctx;
  p.n_batch = n_batch;
  p.n_threads = n_threads;
  p.kv = parse_kv_policy(kv);
  Context ctx(m, p);
  std::vector<float> logits(tokens.size() * m.config().n_vocab);
  ctx.eval(tokens.data(), (int32_t)tokens.size(), logits.data(), true);
  return logits;
}

// The forward pass recomputed from scratch in double, query t attending to the
// positions j <= t with visible(t, j) — a masked-attention reference that knows
// nothing about cells or rings.
std::vector<float> naive_logits(const TinyLlama& m, const std::vector<TokenId>& tokens,
                                const std::function<bool(int, int)>& visible) {
  const int n = (int)tokens.size(), d = m.d, hd = m.head_dim, qd = m.n_head * hd, kvd = m.n_kv_head * hd;
  const int group = m.n_head / m.n_kv_head;
  RopeParams rp;
  rp.n_rot = hd;
  rp.freq_base = m.rope_base;
  const Rope rope(rp);
  auto matvec = [](const std::vector<float>& W, const float* x, int rows, int cols, float* y) {
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int c = 0; c < cols; ++c) s += (double)W[(size_t)r * cols + c] * x[c];
      y[r] = (float)s;
    }
  };
  auto rms = [&](const float* x, const std::vector<float>& w, float* y) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += (double)x[i] * x[i];
    const double inv = 1.0 / std::sqrt(ss / d + m.eps);
    for (int i = 0; i < d; ++i) y[i] = (float)(x[i] * inv * w[i]);
  };
  std::vector<float> x((size_t)n * d), xn(d), q((size_t)n * qd), k((size_t)n * kvd), v((size_t)n * kvd);
  std::vector<float> att(qd), tmp(d), g(m.d_ff), u(m.d_ff);
  for (int t = 0; t < n; ++t) std::copy_n(&m.tok_embd[(size_t)tokens[t] * d], d, &x[(size_t)t * d]);
  for (const TinyLlama::Layer& L : m.layers) {
    for (int t = 0; t < n; ++t) {
      rms(&x[(size_t)t * d], L.attn_norm, xn.data());
      matvec(L.wq, xn.data(), qd, d, &q[(size_t)t * qd]);
      matvec(L.wk, xn.data(), kvd, d, &k[(size_t)t * kvd]);
      matvec(L.wv, xn.data(), kvd, d, &v[(size_t)t * kvd]);
      rope.apply(&q[(size_t)t * qd], m.n_head, hd, t);
      rope.apply(&k[(size_t)t * kvd], m.n_kv_head, hd, t);
    }
    std::vector<float> xo = x;
    for (int t = 0; t < n; ++t) {
      for (int h = 0; h < m.n_head; ++h) {
        const float* qh = &q[(size_t)t * qd + (size_t)h * hd];
        const int kh = h / group;
        std::vector<double> s;
        std::vector<int> idx;
        for (int j = 0; j <= t; ++j) {
          if (!visible(t, j)) continue;
          double dot = 0;
          for (int i = 0; i < hd; ++i) dot += (double)qh[i] * k[(size_t)j * kvd + (size_t)kh * hd + i];
          s.push_back(dot / std::sqrt((double)hd));
          idx.push_back(j);
        }
        double mx = -1e300, sum = 0;
        for (double e : s) mx = std::max(mx, e);
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int i = 0; i < hd; ++i) {
          double o = 0;
          for (size_t r = 0; r < idx.size(); ++r) o += s[r] * v[(size_t)idx[r] * kvd + (size_t)kh * hd + i];
          att[(size_t)h * hd + i] = (float)(o / sum);
        }
      }
      matvec(L.wo, att.data(), d, qd, tmp.data());
      for (int i = 0; i < d; ++i) xo[(size_t)t * d + i] += tmp[i];
    }
    x = xo;
    for (int t = 0; t < n; ++t) {
      rms(&x[(size_t)t * d], L.ffn_norm, xn.data());
      matvec(L.gate, xn.data(), m.d_ff, d, g.data());
      matvec(L.up, xn.data(), m.d_ff, d, u.data());
      for (int i = 0; i < m.d_ff; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      matvec(L.down, g.data(), d, m.d_ff, tmp.data());
      for (int i = 0; i < d; ++i) x[(size_t)t * d + i] += tmp[i];
    }
  }
  std::vector<float> logits((size_t)n * m.n_vocab);
  for (int t = 0; t < n; ++t) {
    rms(&x[(size_t)t * d], m.out_norm, xn.data());
    matvec(m.tok_embd, xn.data(), m.n_vocab, d, &logits[(size_t)t * m.n_vocab]);  // tied output
  }
  return logits;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(WindowCache, WindowAtLeastTheTextEqualsFullBitForBit) {
  TinyLlama m(3);
  const auto toks = test::random_tokens(100, m.n_vocab, 7);
  for (const char* kv : {"f16", "f32", "q8"}) {
    const std::string k = kv;
    const auto full = eval_logits(*m.model, "full+" + k, toks);
    EXPECT_EQ(full, eval_logits(*m.model, "window:100,sinks:0+" + k, toks)) << kv;
    EXPECT_EQ(full, eval_logits(*m.model, "window:96,sinks:4+" + k, toks)) << kv;  // sinks + window = length
    EXPECT_EQ(full, eval_logits(*m.model, "window:500+" + k, toks)) << kv;
  }
}

TEST(WindowCache, NaiveReferenceMatchesFullCache) {
  // The reference itself, with nothing masked, against the engine's f32 cache.
  TinyLlama m(5);
  const auto toks = test::random_tokens(50, m.n_vocab, 11);
  const auto ref = naive_logits(m, toks, [](int, int) { return true; });
  EXPECT_LT(max_abs_diff(ref, eval_logits(*m.model, "f32", toks)), 2e-3f);
}

TEST(WindowCache, RingWrapAroundEqualsNaiveMaskedReference) {
  // f32 storage and f32 weights: the engine differs from the double-precision
  // reference only by f32 rounding (~1e-6 relative per op); logits are O(10),
  // so 2e-3 absolute is far below the effect of dropping a token (checked).
  TinyLlama m(5);
  const auto toks = test::random_tokens(90, m.n_vocab, 13);
  struct Case {
    int W, S;
  };
  for (const Case c : {Case{16, 4}, Case{7, 0}, Case{10, 1}, Case{32, 3}}) {
    const std::string kv = fmt::format("window:{},sinks:{}+f32", c.W, c.S);
    const auto got = eval_logits(*m.model, kv, toks, 64);
    const auto ref = naive_logits(m, toks, [&](int t, int j) { return j < c.S || j > t - c.W; });
    EXPECT_LT(max_abs_diff(got, ref), 2e-3f) << kv;
    const auto full = naive_logits(m, toks, [](int, int) { return true; });
    EXPECT_GT(max_abs_diff(got, full), 0.05f) << kv << ": the window changed nothing, the test would be vacuous";
  }
}

TEST(WindowCache, LogitsIndependentOfBatchSizeAndThreads) {
  TinyLlama m(9);
  const auto toks = test::random_tokens(150, m.n_vocab, 17);
  for (const char* kv : {"window:24,sinks:4", "window:17,sinks:0+f32", "window:40,sinks:2+q8",
                         "window:33+q4,hadamard"}) {
    const auto base = eval_logits(*m.model, kv, toks, 1, 512, 1);
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 3)) << kv;
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 64, 512, 3)) << kv;
    EXPECT_EQ(base, eval_logits(*m.model, kv, toks, 256)) << kv;
  }
}

TEST(WindowCache, GeneratesPastTheContextInConstantMemory) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 32;  // ignored by a window cache: it owns sinks + window cells
  p.n_threads = 2;
  p.kv = parse_kv_policy("window:20,sinks:4");
  Context ctx(*m.model, p);
  EXPECT_EQ(ctx.n_ctx(), 24);
  const size_t bytes = ctx.cache().bytes();
  GenerateParams gp;
  gp.n_predict = 300;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  const auto r = generate(ctx, test::random_tokens(10, m.n_vocab, 3), gp, [](const std::string&) {});
  EXPECT_EQ(r.tokens.size(), 300u);
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(ctx.n_past(), 309);
  EXPECT_EQ(ctx.cache().bytes(), bytes);
  EXPECT_EQ(ctx.cache().bytes_used(), bytes);  // every cell in use, none added
}

TEST(FullCache, StopsCleanlyWhenTheContextIsFull) {
  TinyLlama m(2);
  ContextParams p;
  p.n_ctx = 32;
  p.n_threads = 2;
  Context ctx(*m.model, p);
  GenerateParams gp;
  gp.n_predict = 100;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  const auto r = generate(ctx, test::random_tokens(10, m.n_vocab, 3), gp, [](const std::string&) {});
  EXPECT_EQ(r.stop_reason, "context full");
  EXPECT_EQ(ctx.n_past(), 32);
  std::vector<float> logits(m.n_vocab);
  const TokenId t = 1;
  try {
    ctx.eval(&t, 1, logits.data());
    FAIL() << "eval past the context succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context full"), std::string::npos) << e.what();
  }
}

TEST(FullCache, ContextShiftKeepsGoingAndMatchesTheShiftedTextRecomputed) {
  TinyLlama m(5);
  ContextParams p;
  p.n_ctx = 32;
  p.n_threads = 2;
  GenerateParams gp;
  gp.n_predict = 100;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  gp.sampling.repeat_penalty = 3.0f;  // the random tiny model otherwise repeats one token
  gp.context_shift = true;
  gp.n_keep = 4;
  const auto prompt = test::random_tokens(10, m.n_vocab, 3);
  Context on(*m.model, p);
  const auto r = generate(on, prompt, gp, [](const std::string&) {});
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(r.tokens.size(), 100u);
  // 10 + 99 evaluated tokens through 32 cells: kept 4 + 14, so a shift every 14 tokens.
  EXPECT_GE(r.n_shifts, 5);
  EXPECT_LE(on.n_past(), 32);
  // Cache off recomputes the same shifted text from scratch at every step.
  gp.use_cache = false;
  Context off(*m.model, p);
  const auto r_off = generate(off, prompt, gp, [](const std::string&) {});
  EXPECT_EQ(r.tokens, r_off.tokens);
  EXPECT_EQ(r.n_shifts, r_off.n_shifts);
  // And the text differs from what an unbounded context gives: the shift really drops tokens.
  p.n_ctx = 256;
  gp.use_cache = true;
  Context big(*m.model, p);
  EXPECT_NE(generate(big, prompt, gp, [](const std::string&) {}).tokens, r.tokens);
}

// Greedy generation with the cache equals recomputing the history every step.
TEST(KvPolicies, CacheOnOffGenerationIsIdentical) {
  TinyLlama m(4);
  const auto prompt = test::random_tokens(20, m.n_vocab, 5);
  for (const char* kv : {"window:12,sinks:4", "window:30,sinks:2+q8", "q8", "q4,hadamard", "full"}) {
    std::vector<TokenId> out[2];
    for (int use_cache = 0; use_cache < 2; ++use_cache) {
      ContextParams p;
      p.n_ctx = 128;
      p.n_threads = 2;
      p.kv = parse_kv_policy(kv);
      Context ctx(*m.model, p);
      GenerateParams gp;
      gp.n_predict = 60;
      gp.ignore_eos = true;
      gp.use_cache = use_cache;
      gp.sampling.temperature = 0;
      out[use_cache] = generate(ctx, prompt, gp, [](const std::string&) {}).tokens;
    }
    EXPECT_EQ(out[0].size(), 60u) << kv;
    EXPECT_EQ(out[0], out[1]) << kv;
  }
}

}  // namespace
}  // namespace kvforge
