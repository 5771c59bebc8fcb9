#pragma once
// A tiny random deepseek2 model (MLA attention + MoE: one dense layer, then
// mixture-of-experts layers with shared experts and a selection bias), Q8_0
// matrices, written to GGUF by the tests: the latent (MLA) cache's tests.
#include <string>

#include "ops/ggml_types.h"

namespace kvforge::testing {

namespace tiny_deepseek2 {
constexpr int kVocab = 257, kD = 64, kHeads = 4, kLatent = 64, kRope = 32, kNope = 32, kV = 32, kLayers = 3;
constexpr int kExperts = 8, kUsed = 3, kFfExp = 32, kFf = 96;
}  // namespace tiny_deepseek2

// Writes the model to `path` (overwrites) and returns path; q_lora: queries
// through a compressed q_a (rank 32) with its norm.
std::string write_tiny_deepseek2(const std::string& path, bool q_lora);

// Variants (the above: {q_lora}).
struct TinyDeepseek2Spec {
  bool q_lora = false;
  // false: every layer dense (no top-k expert choice, which turns rounding
  // differences into different experts)
  bool moe = true;
  // Q8_0 matmuls round their activations to 8 bits; F16 ones keep them f32
  GgmlType weights = GgmlType::Q8_0;
  float gain = 2.0f;  // matrices are N(0, gain^2 / cols): each scales its input by about gain
};
std::string write_tiny_deepseek2(const std::string& path, const TinyDeepseek2Spec& spec);

// A tiny llama (tiny_model.h's default spec with these weights, 1024-token
// context) converted by convert-mla: latent 16 + a rope key of 8 per KV
// head (rows of 32 values), from the weights alone (--method svd). Writes
// `prefix`_gqa.gguf and `prefix`_converted.gguf in the temp dir; returns the
// latter.
std::string write_converted_tiny_llama(const std::string& prefix, GgmlType weights = GgmlType::Q4_1);

}  // namespace kvforge::testing
