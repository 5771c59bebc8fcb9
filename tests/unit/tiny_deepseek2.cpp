#include "tiny_deepseek2.h"

#include <cmath>
#include <random>
#include <vector>

#include "gguf/gguf.h"
#include "model/convert_mla.h"
#include "ops/quantize.h"
#include "tiny_model.h"

namespace kvforge::testing {

using namespace tiny_deepseek2;

std::string write_tiny_deepseek2(const std::string& path, bool q_lora) {
  TinyDeepseek2Spec s;
  s.q_lora = q_lora;
  return write_tiny_deepseek2(path, s);
}

std::string write_tiny_deepseek2(const std::string& path, const TinyDeepseek2Spec& spec) {
  const bool q_lora = spec.q_lora, moe = spec.moe;
  std::mt19937 rng(5);
  gguf::Writer w;
  const std::string a = "deepseek2";
  w.set_string("general.architecture", a);
  w.set_u32(a + ".block_count", kLayers);
  w.set_u32(a + ".embedding_length", kD);
  w.set_u32(a + ".feed_forward_length", kFf);
  w.set_u32(a + ".attention.head_count", kHeads);
  w.set_u32(a + ".attention.head_count_kv", 1);
  w.set_u32(a + ".context_length", 512);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32(a + ".attention.q_lora_rank", q_lora ? 32 : 0);
  w.set_u32(a + ".attention.kv_lora_rank", kLatent);
  w.set_u32(a + ".attention.key_length", kLatent + kRope);
  w.set_u32(a + ".attention.value_length", kLatent);
  w.set_u32(a + ".attention.key_length_mla", kNope + kRope);
  w.set_u32(a + ".attention.value_length_mla", kV);
  w.set_u32(a + ".rope.dimension_count", kRope);
  w.set_u32(a + ".leading_dense_block_count", moe ? 1 : kLayers);
  w.set_u32(a + ".expert_count", kExperts);
  w.set_u32(a + ".expert_used_count", kUsed);
  w.set_u32(a + ".expert_shared_count", 1);
  w.set_u32(a + ".expert_feed_forward_length", kFfExp);
  w.set_u32(a + ".expert_gating_func", 2);
  w.set_f32(a + ".expert_weights_scale", 1.5f);
  w.set_string("tokenizer.ggml.model", "gpt2");
  std::vector<std::string> toks;
  for (int i = 0; i < kVocab; ++i) toks.push_back(std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", toks);

  // Matrices ([n][rows][cols], n = 1 for 2-D) in spec.weights (Q8_0 by
  // default, so the quantized matmul paths are what is checked); norms and
  // the bias f32.
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const GgmlType wt = spec.weights;
  auto matrix = [&](const std::string& name, int rows, int cols, int n = 1) {
    std::vector<float> x((size_t)n * rows * cols);
    for (float& v : x) v = nd(rng) * spec.gain / std::sqrt((float)cols);
    std::vector<uint8_t> q(row_bytes(wt, cols) * rows * n);
    quantize_row(wt, x.data(), q.data(), (int64_t)x.size());
    if (n == 1) w.add_tensor(name, wt, {cols, rows}, q.data());
    else w.add_tensor(name, wt, {cols, rows, n}, q.data());
  };
  auto vec = [&](const std::string& name, int n, float mean) {
    std::vector<float> v(n);
    for (float& x : v) x = mean + 0.1f * nd(rng);
    w.add_tensor(name, GgmlType::F32, {n}, v.data());
  };
  matrix("token_embd.weight", kVocab, kD);
  vec("output_norm.weight", kD, 1.0f);
  matrix("output.weight", kVocab, kD);
  for (int i = 0; i < kLayers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    vec(p + "attn_norm.weight", kD, 1.0f);
    vec(p + "ffn_norm.weight", kD, 1.0f);
    if (q_lora) {
      matrix(p + "attn_q_a.weight", 32, kD);
      vec(p + "attn_q_a_norm.weight", 32, 1.0f);
      matrix(p + "attn_q_b.weight", kHeads * (kNope + kRope), 32);
    } else {
      matrix(p + "attn_q.weight", kHeads * (kNope + kRope), kD);
    }
    matrix(p + "attn_kv_a_mqa.weight", kLatent + kRope, kD);
    vec(p + "attn_kv_a_norm.weight", kLatent, 1.0f);
    matrix(p + "attn_k_b.weight", kLatent, kNope, kHeads);
    matrix(p + "attn_v_b.weight", kV, kLatent, kHeads);
    matrix(p + "attn_output.weight", kD, kHeads * kV);
    if (i == 0 || !moe) {
      matrix(p + "ffn_gate.weight", kFf, kD);
      matrix(p + "ffn_up.weight", kFf, kD);
      matrix(p + "ffn_down.weight", kD, kFf);
      continue;
    }
    matrix(p + "ffn_gate_inp.weight", kExperts, kD);
    vec(p + "exp_probs_b.bias", kExperts, 0.0f);
    matrix(p + "ffn_gate_exps.weight", kFfExp, kD, kExperts);
    matrix(p + "ffn_up_exps.weight", kFfExp, kD, kExperts);
    matrix(p + "ffn_down_exps.weight", kD, kFfExp, kExperts);
    matrix(p + "ffn_gate_shexp.weight", kFfExp, kD);
    matrix(p + "ffn_up_shexp.weight", kFfExp, kD);
    matrix(p + "ffn_down_shexp.weight", kD, kFfExp);
  }
  w.write(path);
  return path;
}

std::string write_converted_tiny_llama(const std::string& prefix, GgmlType weights) {
  TinyModelSpec s;
  s.n_ctx_train = 1024;
  s.weight_type = weights;
  ConvertMlaParams p;
  p.input = write_tiny_model(temp_path(prefix + "_gqa.gguf"), s);
  p.output = temp_path(prefix + "_converted.gguf");
  p.kv_dim = 16;
  p.rope_dims = 8;
  p.method = MlaMethod::Svd;  // from the weights alone: no calibration text
  p.n_threads = 2;
  convert_mla(p);
  return p.output;
}

}  // namespace kvforge::testing
