#pragma once
// Views of a model's tensors. Matrices point into the memory-mapped GGUF
// (no copies); small vectors (norms, biases) are converted to f32 at load.
#include <vector>

#include "ops/matmul.h"

namespace kvforge {

// Optional f32 vector: empty means absent.
using Vec = std::vector<float>;

// MLA (ModelConfig::mla: H heads, P nope + R rope dims, latent d_c, V; K
// rope keys of R dims, RW = K * R).
struct MlaWeights {
  WeightMatrix wq;        // [H*(P+R)][d_model], when q_lora_rank == 0
  Vec bq;                 // [H*(P+R)] optional (a converted Qwen2)
  WeightMatrix wq_a;      // [q_lora_rank][d_model]
  Vec q_a_norm;           // [q_lora_rank]
  WeightMatrix wq_b;      // [H*(P+R)][q_lora_rank]
  WeightMatrix wkv_a;     // [d_c+RW][d_model]: [c_raw | kpe_raw]
  Vec bkv_a;              // [d_c+RW] optional
  Vec kv_a_norm;          // [d_c]; empty: the latent is not normalised (a conversion)
  // [U] of [d_c][P]: W_UK^T, absorbs q_nope into the latent; query head h
  // reads k_b[h * U / H] (U = H, or the KV heads of a conversion); empty when P == 0.
  std::vector<WeightMatrix> k_b;
  std::vector<WeightMatrix> v_b;  // [U] of [V][d_c]: W_UV, likewise
  // [RW / 2]: rope-key pair j turns by the angle of the model RoPE's pair
  // rope_pairs[j] (a conversion keeps some of the original frequencies); empty: pair j.
  std::vector<int32_t> rope_pairs;
};

// Routed experts (3-D tensors seen as one matrix per expert) and shared ones.
struct MoeWeights {
  WeightMatrix gate_inp;       // [n_expert][d_model] router
  Vec exp_probs_b;             // [n_expert] selection bias (optional)
  std::vector<WeightMatrix> gate, up;  // [n_expert] of [d_ff_exp][d_model]
  std::vector<WeightMatrix> down;      // [n_expert] of [d_model][d_ff_exp]
  WeightMatrix gate_shexp, up_shexp;   // [n_shared*d_ff_exp][d_model]; rows 0: no shared experts
  WeightMatrix down_shexp;             // [d_model][n_shared*d_ff_exp]
};

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
  MlaWeights mla;              // AttnBlock::MLA layers only (LayerConfig::attn)
  MoeWeights moe;              // FfnBlock::MoE layers only (LayerConfig::ffn)

  // Every weight matrix of the layer that is present (for repacking and byte counts).
  std::vector<WeightMatrix*> matrices();
  std::vector<const WeightMatrix*> matrices() const;
};

struct ModelWeights {
  WeightMatrix tok_embd;   // [n_vocab][d_model]
  WeightMatrix pos_embd;   // [n_ctx_train][d_model], learned positions only
  std::vector<LayerWeights> layers;
  Vec out_norm, out_norm_b;  // [d_model]
  WeightMatrix output;     // [n_vocab][d_model]; may alias tok_embd (tied)
  // f32 matrices derived at load (W_UK^T of a legacy fused attn_kv_b) that the views above point into.
  std::vector<std::vector<float>> derived;
};

}  // namespace kvforge
