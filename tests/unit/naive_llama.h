#pragma once
// Test helpers for KV-cache policies on the tiny llama: all logits through a
// Context, and a naive double-precision forward pass with masked attention.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "model/context.h"
#include "ops/rope.h"
#include "tiny_llama.h"

namespace kvforge::test {

using Visible = std::function<bool(int layer, int kv_head, int t, int j)>;
inline bool all_visible(int, int, int, int) { return true; }
struct Gate {
  double alpha = 1;
  int sinks = 0, recent = 0;
};
using Gates = std::function<Gate(int layer, int kv_head)>;
// Sees every attention weight w that query head q_head of query t gives
// position j (the masked attention, before any gate blend).
using AttnHook = std::function<void(int layer, int q_head, int t, int j, double w)>;

// All logits of `tokens` evaluated in batches of `n_batch`.
inline std::vector<float> eval_logits(const Model& m, const std::string& kv, const std::vector<TokenId>& tokens,
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

// A policy's logits are the same bits for any batch split and thread count
// (1 token a pass on 1 thread as the baseline; 3, 64 on 3 threads, 256).
inline void expect_batch_invariant(const Model& m, const std::string& kv, const std::vector<TokenId>& tokens) {
  const auto base = eval_logits(m, kv, tokens, 1, 512, 1);
  EXPECT_EQ(base, eval_logits(m, kv, tokens, 3)) << kv;
  EXPECT_EQ(base, eval_logits(m, kv, tokens, 64, 512, 3)) << kv;
  EXPECT_EQ(base, eval_logits(m, kv, tokens, 256)) << kv;
}

// The forward pass recomputed from scratch in double, query t of KV head h in
// layer l attending to the positions j <= t with visible(l, h, t, j) — a
// masked-attention reference that knows nothing about cells or rings. With
// gates, head (l, h) outputs alpha * that + (1 - alpha) * attention to the
// positions j < sinks or j > t - recent (soft gates, SPEC.md §4).
inline std::vector<float> naive_logits(const TinyLlama& m, const std::vector<TokenId>& tokens, const Visible& visible,
                                       const Gates& gates = {}, const AttnHook& hook = {}) {
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
  for (int layer = 0; layer < m.n_layer; ++layer) {
    const TinyLlama::Layer& L = m.layers[layer];
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
        std::vector<double> full(hd), stream(hd, 0.0);
        // softmax-weighted V over the positions j <= t that pass `keep`.
        auto attend_masked = [&](const std::function<bool(int)>& keep, double* out) {
          std::vector<double> s;
          std::vector<int> idx;
          for (int j = 0; j <= t; ++j) {
            if (!keep(j)) continue;
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
            out[i] = o / sum;
          }
          if (hook && out == full.data())
            for (size_t r = 0; r < idx.size(); ++r) hook(layer, h, t, idx[r], s[r] / sum);
        };
        attend_masked([&](int j) { return visible(layer, kh, t, j); }, full.data());
        const Gate g = gates ? gates(layer, kh) : Gate{};
        if (g.alpha != 1.0) attend_masked([&](int j) { return j < g.sinks || j > t - g.recent; }, stream.data());
        for (int i = 0; i < hd; ++i) att[(size_t)h * hd + i] = (float)(g.alpha * full[i] + (1 - g.alpha) * stream[i]);
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

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace kvforge::test
