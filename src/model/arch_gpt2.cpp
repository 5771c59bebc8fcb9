// GPT-2: learned absolute positions, LayerNorm with biases, fused QKV
// projection, GELU (tanh approximation) MLP, tied output by default.
#include <cmath>

#include "model/arch_registry.h"
#include "util/error.h"

namespace kvforge {

namespace {

void load_gpt2(const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
  c.n_layer = (int)t.require_int("gpt2.block_count");
  c.d_model = (int)t.require_int("gpt2.embedding_length");
  c.d_ff = (int)t.int_or("gpt2.feed_forward_length", 4 * c.d_model);
  c.n_head = (int)t.require_int("gpt2.attention.head_count");
  c.n_kv_head = c.n_head;
  c.n_ctx_train = (int)t.require_int("gpt2.context_length");
  if (c.n_head <= 0 || c.d_model % c.n_head != 0) fail("invalid head count {} for width {}", c.n_head, c.d_model);
  c.head_dim_k = c.head_dim_v = c.d_model / c.n_head;
  c.norm = NormKind::LayerNorm;
  c.norm_eps = (float)t.float_or("gpt2.attention.layer_norm_epsilon", 1e-5);
  c.position = PositionKind::Learned;
  c.ffn = FfnKind::GELU;
  c.attn_scale = 1.0f / std::sqrt((float)c.head_dim_k);

  const gguf::TensorInfo* emb = t.file().find_tensor("token_embd.weight");
  if (!emb) fail("model file lacks tensor 'token_embd.weight'");
  c.n_vocab = (int)emb->ne[1];
  const int d = c.d_model;

  w.tok_embd = t.matrix("token_embd.weight", c.n_vocab, d);
  w.pos_embd = t.matrix("position_embd.weight", c.n_ctx_train, d);
  w.out_norm = t.vec("output_norm.weight", d);
  w.out_norm_b = t.vec("output_norm.bias", d);
  w.output = t.optional_matrix("output.weight", c.n_vocab, d);
  if (w.output.rows == 0) w.output = w.tok_embd;

  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = w.layers[i];
    L.attn_norm = t.vec(p + "attn_norm.weight", d);
    L.attn_norm_b = t.vec(p + "attn_norm.bias", d);
    // The fused Q/K/V projection as three matrices over its row blocks.
    const WeightMatrix wqkv = t.matrix(p + "attn_qkv.weight", 3 * d, d);
    L.wq = row_block(wqkv, 0, d);
    L.wk = row_block(wqkv, d, d);
    L.wv = row_block(wqkv, 2 * d, d);
    Vec bqkv = t.vec(p + "attn_qkv.bias", 3 * d);
    L.bq.assign(bqkv.begin(), bqkv.begin() + d);
    L.bk.assign(bqkv.begin() + d, bqkv.begin() + 2 * d);
    L.bv.assign(bqkv.begin() + 2 * d, bqkv.end());
    L.wo = t.matrix(p + "attn_output.weight", d, d);
    L.bo = t.vec(p + "attn_output.bias", d);
    L.ffn_norm = t.vec(p + "ffn_norm.weight", d);
    L.ffn_norm_b = t.vec(p + "ffn_norm.bias", d);
    L.w_up = t.matrix(p + "ffn_up.weight", c.d_ff, d);
    L.b_up = t.vec(p + "ffn_up.bias", c.d_ff);
    L.w_down = t.matrix(p + "ffn_down.weight", d, c.d_ff);
    L.b_down = t.vec(p + "ffn_down.bias", d);
  }
}

}  // namespace

void register_gpt2(ArchTable& table) { table.emplace_back("gpt2", load_gpt2); }

}  // namespace kvforge
