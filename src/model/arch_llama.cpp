// The llama family: RMSNorm, RoPE, GQA, SwiGLU, tied or separate output.
// Covers Llama 2/3, SmolLM2, Mistral (arch "llama") and Qwen2 (QKV biases,
// RoPE over halves because its GGUF Q/K rows are not permuted).
#include <cmath>

#include "model/arch_registry.h"
#include "util/error.h"

namespace kvforge {

namespace {

void load_llama_family(const TensorLoader& t, ModelConfig& c, ModelWeights& w, const std::string& a,
                       RopePairing pairing) {
  c.n_layer = (int)t.require_int(a + ".block_count");
  c.d_model = (int)t.require_int(a + ".embedding_length");
  c.d_ff = (int)t.require_int(a + ".feed_forward_length");
  c.n_head = (int)t.require_int(a + ".attention.head_count");
  c.n_kv_head = (int)t.int_or(a + ".attention.head_count_kv", c.n_head);
  c.n_ctx_train = (int)t.int_or(a + ".context_length", 2048);
  if (c.n_head <= 0 || c.n_kv_head <= 0 || c.n_head % c.n_kv_head != 0)
    fail("invalid head counts: {} query heads, {} KV heads", c.n_head, c.n_kv_head);
  c.head_dim_k = (int)t.int_or(a + ".attention.key_length", c.d_model / c.n_head);
  c.head_dim_v = (int)t.int_or(a + ".attention.value_length", c.head_dim_k);
  c.norm = NormKind::RMSNorm;
  c.norm_eps = (float)t.float_or(a + ".attention.layer_norm_rms_epsilon", 1e-5);
  c.position = PositionKind::Rope;
  c.rope.pairing = pairing;
  c.rope.n_rot = (int)t.int_or(a + ".rope.dimension_count", c.head_dim_k);
  c.rope.freq_base = (float)t.float_or(a + ".rope.freq_base", 10000.0);
  c.ffn = FfnKind::SwiGLU;
  c.attn_scale = 1.0f / std::sqrt((float)c.head_dim_k);

  const gguf::TensorInfo* emb = t.file().find_tensor("token_embd.weight");
  if (!emb) fail("model file lacks tensor 'token_embd.weight'");
  c.n_vocab = (int)emb->ne[1];
  const int d = c.d_model, qd = c.q_dim(), kd = c.k_dim(), vd = c.v_dim();

  w.tok_embd = t.matrix("token_embd.weight", c.n_vocab, d);
  w.out_norm = t.vec("output_norm.weight", d);
  w.output = t.optional_matrix("output.weight", c.n_vocab, d);
  if (w.output.rows == 0) w.output = w.tok_embd;  // tied embeddings
  c.rope.freq_factors = t.optional_vec("rope_freqs.weight", c.rope.n_rot / 2);

  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = w.layers[i];
    L.attn_norm = t.vec(p + "attn_norm.weight", d);
    L.wq = t.matrix(p + "attn_q.weight", qd, d);
    L.wk = t.matrix(p + "attn_k.weight", kd, d);
    L.wv = t.matrix(p + "attn_v.weight", vd, d);
    L.bq = t.optional_vec(p + "attn_q.bias", qd);
    L.bk = t.optional_vec(p + "attn_k.bias", kd);
    L.bv = t.optional_vec(p + "attn_v.bias", vd);
    L.wo = t.matrix(p + "attn_output.weight", d, c.attn_dim());
    L.ffn_norm = t.vec(p + "ffn_norm.weight", d);
    L.w_gate = t.matrix(p + "ffn_gate.weight", c.d_ff, d);
    L.w_up = t.matrix(p + "ffn_up.weight", c.d_ff, d);
    L.w_down = t.matrix(p + "ffn_down.weight", d, c.d_ff);
  }
}

}  // namespace

void register_llama_family(ArchTable& table) {
  table.emplace_back("llama", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "llama", RopePairing::Adjacent);
  });
  table.emplace_back("qwen2", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "qwen2", RopePairing::Halves);
  });
}

}  // namespace kvforge
