#include "tiny_model.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "gguf/gguf.h"
#include "ops/quantize.h"

namespace kvforge::testing {

namespace {

// GPT-2's byte-to-unicode table, so the byte-level BPE tokenizer accepts the vocabulary.
std::vector<std::string> byte_tokens() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cp(256, -1);
  for (int b : bs) cp[b] = b;
  int extra = 0;
  for (int b = 0; b < 256; ++b)
    if (cp[b] < 0) cp[b] = 256 + extra++;
  std::vector<std::string> out;
  for (int b = 0; b < 256; ++b) {
    const int c = cp[b];
    std::string s;
    if (c < 0x80) s += (char)c;
    else { s += (char)(0xC0 | (c >> 6)); s += (char)(0x80 | (c & 0x3F)); }
    out.push_back(s);
  }
  out.push_back("<|endoftext|>");
  return out;
}

class Builder {
 public:
  Builder(const TinyModelSpec& s) : s_(s), rng_(s.seed) {}

  void matrix(const std::string& name, int rows, int cols) {
    std::normal_distribution<float> nd(0.0f, 0.5f / std::sqrt((float)cols) * 4.0f);
    std::vector<float> w((size_t)rows * cols);
    for (auto& x : w) x = nd(rng_);
    std::vector<uint8_t> q(row_bytes(s_.weight_type, cols) * rows);
    for (int r = 0; r < rows; ++r)
      quantize_row(s_.weight_type, &w[(size_t)r * cols], &q[row_bytes(s_.weight_type, cols) * r], cols);
    w_.add_tensor(name, s_.weight_type, {cols, rows}, q.data());
  }
  void vec(const std::string& name, int n, float mean, float sd) {
    std::normal_distribution<float> nd(mean, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng_);
    w_.add_tensor(name, GgmlType::F32, {n}, v.data());
  }
  gguf::Writer& w() { return w_; }

 private:
  const TinyModelSpec& s_;
  std::mt19937 rng_;
  gguf::Writer w_;
};

}  // namespace

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kvforge_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string write_tiny_model(const std::string& path, const TinyModelSpec& s) {
  Builder b(s);
  gguf::Writer& w = b.w();
  const std::string a = s.arch;
  const auto tokens = byte_tokens();
  const int n_vocab = (int)tokens.size();
  w.set_string("general.architecture", a);
  w.set_string("general.name", "tiny-" + a);
  w.set_u32(a + ".block_count", s.n_layer);
  w.set_u32(a + ".embedding_length", s.d_model);
  w.set_u32(a + ".feed_forward_length", s.d_ff);
  w.set_u32(a + ".attention.head_count", s.n_head);
  w.set_u32(a + ".context_length", s.n_ctx_train);
  if (a == "gpt2") {
    w.set_f32("gpt2.attention.layer_norm_epsilon", 1e-5f);
  } else {
    w.set_u32(a + ".attention.head_count_kv", s.n_kv_head);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_f32(a + ".rope.freq_base", 10000.0f);
  }
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt2");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  std::vector<int32_t> types(256, 1);
  types.push_back(3);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", {});
  w.set_u32("tokenizer.ggml.bos_token_id", 256);
  w.set_u32("tokenizer.ggml.eos_token_id", 256);

  const int d = s.d_model, hd = d / s.n_head;
  b.matrix("token_embd.weight", n_vocab, d);
  b.vec("output_norm.weight", d, 1.0f, 0.1f);
  if (a == "gpt2") {
    b.matrix("position_embd.weight", s.n_ctx_train, d);
    b.vec("output_norm.bias", d, 0.0f, 0.1f);
  }
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    b.vec(p + "attn_norm.weight", d, 1.0f, 0.1f);
    b.vec(p + "ffn_norm.weight", d, 1.0f, 0.1f);
    b.matrix(p + "attn_output.weight", d, d);
    b.matrix(p + "ffn_up.weight", s.d_ff, d);
    b.matrix(p + "ffn_down.weight", d, s.d_ff);
    if (a == "gpt2") {
      b.vec(p + "attn_norm.bias", d, 0.0f, 0.1f);
      b.vec(p + "ffn_norm.bias", d, 0.0f, 0.1f);
      b.matrix(p + "attn_qkv.weight", 3 * d, d);
      b.vec(p + "attn_qkv.bias", 3 * d, 0.0f, 0.1f);
      b.vec(p + "attn_output.bias", d, 0.0f, 0.1f);
      b.vec(p + "ffn_up.bias", s.d_ff, 0.0f, 0.1f);
      b.vec(p + "ffn_down.bias", d, 0.0f, 0.1f);
    } else {
      b.matrix(p + "attn_q.weight", d, d);
      b.matrix(p + "attn_k.weight", s.n_kv_head * hd, d);
      b.matrix(p + "attn_v.weight", s.n_kv_head * hd, d);
      b.matrix(p + "ffn_gate.weight", s.d_ff, d);
    }
  }
  w.write(path);
  return path;
}

}  // namespace kvforge::testing
