#pragma once
// Rotary position embeddings. Two pairings exist in GGUF models:
//  Adjacent: rotate (x[2i], x[2i+1])      (llama GGUFs; the converter permuted Q/K)
//  Halves:   rotate (x[i], x[i + d/2])    (Qwen2, GPT-NeoX; Llama-derived MLA conversions)
// Pair i turns by angle pos * theta_i with theta_i = base^(-2i/n_rot) / factor_i.
#include <cstdint>
#include <vector>

namespace kvforge {

enum class RopePairing { Adjacent, Halves };

struct RopeParams {
  RopePairing pairing = RopePairing::Adjacent;
  int n_rot = 0;              // rotated dims per head (<= head_dim; the rest pass through)
  float freq_base = 10000.0f;
  std::vector<float> freq_factors;  // optional per-pair divisors (Llama 3.1 rope_freqs), size n_rot/2
  // YaRN context extension (factor > 1; 0 = off): pair i's frequency moves
  // from base^(-2i/n_rot) (high frequencies, i below the ramp) to that over
  // yarn_factor (low frequencies, above it), linearly across the pairs that
  // turn between beta_fast and beta_slow times in yarn_orig_ctx positions.
  // The attention-temperature part of YaRN (mscale) is the model's softmax
  // scale, not RoPE's.
  float yarn_factor = 0;
  int yarn_orig_ctx = 0;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float attn_factor = 1.0f;         // cos and sin scaled by it (LongRoPE's attention factor)
};

// Precomputed inverse frequencies so every call for a position gives the
// same angles (cache on/off paths must rotate bit-identically).
class Rope {
 public:
  Rope() = default;
  explicit Rope(const RopeParams& p);
  // x: [n_heads][head_dim] of one token at position pos, rotated in place.
  void apply(float* x, int n_heads, int head_dim, int32_t pos) const;
  // The same in two steps, so a token's angles are computed once for all
  // layers: cs[2i], cs[2i+1] = cos, sin of pair i's angle (n_rot floats).
  void angles(int32_t pos, float* cs) const;
  void apply(float* x, int n_heads, int head_dim, const float* cs) const;
  const RopeParams& params() const { return p_; }

 private:
  RopeParams p_;
  std::vector<double> inv_freq_;  // [n_rot/2]
};

}  // namespace kvforge
