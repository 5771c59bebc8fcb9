#pragma once
// Llama-family models converted to latent attention by `kvforge convert-mla`
// (model/convert_mla.h). The file keeps its architecture (llama, qwen2) and
// every tensor but the attention inputs; the conversion is recorded under
// "kvforge.mla.*". Unlike a deepseek2 file the latent has no norm, and the
// cached row keeps R rotary dims of every KV head (one rope key per KV head,
// at frequencies chosen from the original ones), which the engine's latent
// attention reads as data (MlaConfig::n_rope_keys, MlaWeights::rope_pairs).
//
// Tensors of layer i (H query heads of head_dim = P + R, G KV heads, latent D):
//   attn_q.weight        [H*(P+R)][d_model]  each head's rows reordered
//                        [P position-free | R rotary, as adjacent pairs]
//   attn_q.bias          optional, reordered the same way
//   attn_kv_a_mqa.weight [D + G*R][d_model]  [latent | rope key of each KV head]
//   attn_kv_a_mqa.bias   optional
//   attn_k_b.weight      ne {P, D, G}: per KV head W_UK^T (absent when P == 0)
//   attn_v_b.weight      ne {D, V, G}: per KV head W_UV
#include <string>

#include "model/arch_registry.h"

namespace kvforge {

namespace mla_key {
inline const std::string kv_lora_rank = "kvforge.mla.kv_lora_rank";  // D
inline const std::string rope_dims = "kvforge.mla.rope_dims";        // R per KV head
// [n_layer][G * R / 2]: in layer l, rope key pair j turns by the angle of
// the original RoPE's pair rope_pairs[l][j] (the choice may differ per layer)
inline const std::string rope_pairs = "kvforge.mla.rope_pairs";
inline const std::string method = "kvforge.mla.method";            // svd | activation
inline const std::string rope_choice = "kvforge.mla.rope_choice";  // high | norm
inline const std::string calib_tokens = "kvforge.mla.calib_tokens";
inline const std::string source = "kvforge.mla.source";            // the original file's name
}  // namespace mla_key

// A conversion: fills c.mla and makes every layer's attention AttnBlock::MLA
// (true); any other file: false, nothing touched. Needs c's head counts, head
// dims and RoPE. Throws kvforge::Error on inconsistent keys.
bool load_converted_mla_config(const TensorLoader& t, ModelConfig& c);
void load_converted_mla_layer(const TensorLoader& t, const ModelConfig& c, int layer, MlaWeights& W);

}  // namespace kvforge
