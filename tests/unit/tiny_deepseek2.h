#pragma once
// A tiny random deepseek2 model (MLA attention + MoE: one dense layer, then
// mixture-of-experts layers with shared experts and a selection bias), Q8_0
// matrices, written to GGUF by the tests: the latent (MLA) cache's tests.
#include <string>

namespace kvforge::testing {

namespace tiny_deepseek2 {
constexpr int kVocab = 257, kD = 64, kHeads = 4, kLatent = 64, kRope = 32, kNope = 32, kV = 32, kLayers = 3;
constexpr int kExperts = 8, kUsed = 3, kFfExp = 32, kFf = 96;
}  // namespace tiny_deepseek2

// Writes the model to `path` (overwrites) and returns path; q_lora: queries
// through a compressed q_a (rank 32) with its norm.
std::string write_tiny_deepseek2(const std::string& path, bool q_lora);

}  // namespace kvforge::testing
