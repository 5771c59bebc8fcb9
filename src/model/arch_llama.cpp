// The llama family: RMSNorm, RoPE, GQA, SwiGLU, tied or separate output.
// Covers Llama 2/3 (Llama 3.1+ rope scaling as the rope_freqs factors),
// SmolLM2, Mistral (arch "llama"), Qwen2 (QKV biases, RoPE over halves
// because its GGUF Q/K rows are not permuted), Qwen3 (per-head RMSNorm of Q
// and K before RoPE, "attn_q_norm"/"attn_k_norm") and SmolLM3 (every 4th
// layer without RoPE, as llama.cpp's fixed n_no_rope_layer_step = 4; HF's
// no_rope_layer_interval). Phi-3 and Gemma build on the same loader
// (arch_phi3.cpp, arch_gemma.cpp).
#include "model/arch_llama.h"

#include <cmath>

#include "model/mla_converted.h"
#include "util/error.h"

namespace kvforge {

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
  // Linear scaling (e.g. Gemma 3's global layers) divides every frequency by
  // the factor, which is what the per-pair factors do.
  const float linear = (float)t.float_or(a + ".rope.scaling.factor", 1.0);
  if (t.file().get_string(a + ".rope.scaling.type").value_or("") == "linear" && linear != 1.0f) {
    if (!(linear > 0)) fail("invalid {}.rope.scaling.factor {}", a, linear);
    if (c.rope.freq_factors.empty()) c.rope.freq_factors.assign(c.rope.n_rot / 2, 1.0f);
    for (float& f : c.rope.freq_factors) f *= linear;
  }

  const bool mla = load_converted_mla_config(t, c);  // a `kvforge convert-mla` output
  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = w.layers[i];
    L.attn_norm = t.vec(p + "attn_norm.weight", d);
    if (mla) {
      load_converted_mla_layer(t, c, i, L.mla);
    } else if (t.file().find_tensor(p + "attn_qkv.weight")) {  // fused Q/K/V (Phi-3): three row-block views
      const WeightMatrix qkv = t.matrix(p + "attn_qkv.weight", qd + kd + vd, d);
      L.wq = row_block(qkv, 0, qd);
      L.wk = row_block(qkv, qd, kd);
      L.wv = row_block(qkv, qd + kd, vd);
    } else {
      L.wq = t.matrix(p + "attn_q.weight", qd, d);
      L.wk = t.matrix(p + "attn_k.weight", kd, d);
      L.wv = t.matrix(p + "attn_v.weight", vd, d);
    }
    if (!mla) L.bq = t.optional_vec(p + "attn_q.bias", qd);
    L.bk = t.optional_vec(p + "attn_k.bias", kd);
    L.bv = t.optional_vec(p + "attn_v.bias", vd);
    L.q_norm = t.optional_vec(p + "attn_q_norm.weight", c.head_dim_k);
    L.k_norm = t.optional_vec(p + "attn_k_norm.weight", c.head_dim_k);
    L.wo = t.matrix(p + "attn_output.weight", d, c.attn_dim());
    L.ffn_norm = t.vec(p + "ffn_norm.weight", d);
    if (t.file().find_tensor(p + "ffn_gate.weight")) {
      L.w_gate = t.matrix(p + "ffn_gate.weight", c.d_ff, d);
      L.w_up = t.matrix(p + "ffn_up.weight", c.d_ff, d);
    } else {  // gate and up fused in ffn_up, gate rows first (Phi-3)
      const WeightMatrix gate_up = t.matrix(p + "ffn_up.weight", 2 * c.d_ff, d);
      L.w_gate = row_block(gate_up, 0, c.d_ff);
      L.w_up = row_block(gate_up, c.d_ff, c.d_ff);
    }
    L.w_down = t.matrix(p + "ffn_down.weight", d, c.d_ff);
  }
}

void register_llama_family(ArchTable& table) {
  table.emplace_back("llama", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "llama", RopePairing::Adjacent);
  });
  table.emplace_back("qwen2", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "qwen2", RopePairing::Halves);
  });
  table.emplace_back("qwen3", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "qwen3", RopePairing::Halves);
    for (const LayerWeights& L : w.layers)
      if (L.q_norm.empty() || L.k_norm.empty()) fail("qwen3 model lacks its attn_q_norm/attn_k_norm tensors");
  });
  table.emplace_back("smollm3", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "smollm3", RopePairing::Adjacent);
    constexpr int kNoRopeStep = 4;
    c.layers.resize(c.n_layer);
    for (int i = 0; i < c.n_layer; ++i)
      if ((i + 1) % kNoRopeStep == 0) c.layers[i].rope = LayerRope::None;
  });
}

}  // namespace kvforge
