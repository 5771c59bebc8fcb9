#pragma once
// A tiny random llama model written as a real GGUF file (F32 weights, a
// 64-letter byte-level vocabulary), for end-to-end tests of the KV cache
// through Context. Its weights are kept, so tests can recompute the forward
// pass naively.
#include <unistd.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"

namespace kvforge::test {

struct TinyLlama {
  int n_vocab = 64, d = 64, n_layer = 2, n_head = 4, n_kv_head = 2, head_dim = 32, d_ff = 96;
  float eps = 1e-5f, rope_base = 10000.0f;
  // Weights as written: matrices [rows][cols] row-major.
  std::vector<float> tok_embd, out_norm;                           // [n_vocab][d], [d]
  struct Layer { std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down; };
  std::vector<Layer> layers;
  std::string path;
  std::unique_ptr<Model> model;

  // `attn_gain` scales Q and K weights: larger values make attention peakier,
  // so that which tokens are kept visibly matters.
  explicit TinyLlama(uint32_t seed = 1, float attn_gain = 2.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto mat = [&](int rows, int cols, float gain) {
      std::vector<float> m((size_t)rows * cols);
      for (float& x : m) x = nd(rng) * gain / std::sqrt((float)cols);
      return m;
    };
    auto norm_w = [&](int n) {
      std::vector<float> v(n);
      for (float& x : v) x = 1.0f + 0.1f * nd(rng);
      return v;
    };
    const int qd = n_head * head_dim, kvd = n_kv_head * head_dim;
    tok_embd = mat(n_vocab, d, std::sqrt((float)d));
    out_norm = norm_w(d);
    layers.resize(n_layer);
    for (Layer& L : layers) {
      L.attn_norm = norm_w(d);
      L.wq = mat(qd, d, attn_gain);
      L.wk = mat(kvd, d, attn_gain);
      L.wv = mat(kvd, d, 1.0f);
      L.wo = mat(d, qd, 1.0f);
      L.ffn_norm = norm_w(d);
      L.gate = mat(d_ff, d, 1.0f);
      L.up = mat(d_ff, d, 1.0f);
      L.down = mat(d, d_ff, 1.0f);
    }

    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "tiny-llama-test");
    w.set_u32("llama.block_count", n_layer);
    w.set_u32("llama.embedding_length", d);
    w.set_u32("llama.feed_forward_length", d_ff);
    w.set_u32("llama.attention.head_count", n_head);
    w.set_u32("llama.attention.head_count_kv", n_kv_head);
    w.set_u32("llama.attention.key_length", head_dim);  // != d / n_head: q8/q4 need 32
    w.set_u32("llama.context_length", 4096);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", eps);
    w.set_f32("llama.rope.freq_base", rope_base);
    w.set_string("tokenizer.ggml.model", "gpt2");
    std::vector<std::string> toks;
    for (int i = 0; i < n_vocab; ++i) toks.push_back(std::string(1, (char)('0' + i)));  // '0'..'o', printable
    w.set_string_array("tokenizer.ggml.tokens", toks);
    auto put = [&](const std::string& name, const std::vector<float>& v, int rows, int cols) {
      if (rows == 1) w.add_tensor(name, GgmlType::F32, {cols}, v.data());
      else w.add_tensor(name, GgmlType::F32, {cols, rows}, v.data());
    };
    put("token_embd.weight", tok_embd, n_vocab, d);
    put("output_norm.weight", out_norm, 1, d);
    for (int l = 0; l < n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const Layer& L = layers[l];
      put(p + "attn_norm.weight", L.attn_norm, 1, d);
      put(p + "attn_q.weight", L.wq, qd, d);
      put(p + "attn_k.weight", L.wk, kvd, d);
      put(p + "attn_v.weight", L.wv, kvd, d);
      put(p + "attn_output.weight", L.wo, d, qd);
      put(p + "ffn_norm.weight", L.ffn_norm, 1, d);
      put(p + "ffn_gate.weight", L.gate, d_ff, d);
      put(p + "ffn_up.weight", L.up, d_ff, d);
      put(p + "ffn_down.weight", L.down, d, d_ff);
    }
    path = "/tmp/kvforge_tiny_llama_" + std::to_string(getpid()) + "_" + std::to_string(seed) + ".gguf";
    w.write(path);
    model = Model::load(path);
  }
  ~TinyLlama() { unlink(path.c_str()); }
  TinyLlama(const TinyLlama&) = delete;
  TinyLlama& operator=(const TinyLlama&) = delete;
};

// Deterministic pseudo-random token ids in [0, n_vocab).
inline std::vector<TokenId> random_tokens(int n, int n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (TokenId& x : t) x = (TokenId)(rng() % n_vocab);
  return t;
}

}  // namespace kvforge::test
