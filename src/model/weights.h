#pragma once
// Views of a model's tensors. Matrices point into the memory-mapped GGUF
// (no copies); small vectors (norms, biases) are converted to f32 at load.
#include <vector>

#include "ops/matmul.h"

namespace kvforge {

// Optional f32 vector: empty means absent.
using Vec = std::vector<float>;

struct LayerWeights {
  Vec attn_norm, attn_norm_b;  // [d_model]
  // A fused QKV tensor (GPT-2) is loaded as three views of its row blocks.
  WeightMatrix wq, wk, wv;     // [q_dim][d_model], [kv_dim][d_model] x2
  Vec bq, bk, bv;              // optional biases (Qwen2; GPT-2 after splitting)
  Vec q_norm, k_norm;          // [head_dim_k] optional RMSNorm of every Q/K head before RoPE (Qwen3, Gemma 3)
  WeightMatrix wo;             // [d_model][q_dim]
  Vec bo;
  Vec attn_post_norm;          // [d_model] optional RMSNorm of the attention output before the residual add (Gemma 2/3)
  Vec ffn_norm, ffn_norm_b;    // [d_model]
  WeightMatrix w_gate;         // [d_ff][d_model], SwiGLU/GeGLU only
  WeightMatrix w_up;           // [d_ff][d_model]
  Vec b_up;
  WeightMatrix w_down;         // [d_model][d_ff]
  Vec b_down;
  Vec ffn_post_norm;           // [d_model] optional, likewise for the feed-forward output
};

struct ModelWeights {
  WeightMatrix tok_embd;   // [n_vocab][d_model]
  WeightMatrix pos_embd;   // [n_ctx_train][d_model], learned positions only
  std::vector<LayerWeights> layers;
  Vec out_norm, out_norm_b;  // [d_model]
  WeightMatrix output;     // [n_vocab][d_model]; may alias tok_embd (tied)
};

}  // namespace kvforge
