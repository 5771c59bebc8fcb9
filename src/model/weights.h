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
  WeightMatrix wo;             // [d_model][q_dim]
  Vec bo;
  Vec ffn_norm, ffn_norm_b;    // [d_model]
  WeightMatrix w_gate;         // [d_ff][d_model], SwiGLU only
  WeightMatrix w_up;           // [d_ff][d_model]
  Vec b_up;
  WeightMatrix w_down;         // [d_model][d_ff]
  Vec b_down;
};

struct ModelWeights {
  WeightMatrix tok_embd;   // [n_vocab][d_model]
  WeightMatrix pos_embd;   // [n_ctx_train][d_model], learned positions only
  std::vector<LayerWeights> layers;
  Vec out_norm, out_norm_b;  // [d_model]
  WeightMatrix output;     // [n_vocab][d_model]; may alias tok_embd (tied)
};

}  // namespace kvforge
