// deepseek2: DeepSeek-V2/V2-Lite/V3 and the models llama.cpp runs under that
// name. Multi-head Latent Attention (SPEC.md §3) in every layer; a dense
// SwiGLU in the first leading_dense_block_count layers, a mixture of experts
// (routed + shared) in the rest; RoPE on adjacent pairs of the R rope dims,
// optionally YaRN-extended.
//
// Metadata and tensors as llama.cpp's converter writes them. Two attention
// layouts exist: current files carry attn_k_b (per head W_UK^T, ne {P, d_c,
// H}) and attn_v_b (per head W_UV, ne {d_c, V, H}) with key_length = d_c + R,
// value_length = d_c and the per-head widths under key_length_mla /
// value_length_mla; legacy files carry the fused attn_kv_b (ne {d_c,
// H*(P+V)}) with the per-head widths under key_length / value_length.
#include <cmath>

#include "model/arch_registry.h"
#include "util/error.h"

namespace kvforge {

namespace {

const std::string A = "deepseek2";

void load_config(const TensorLoader& t, ModelConfig& c, bool legacy) {
  c.n_layer = (int)t.require_int(A + ".block_count");
  c.d_model = (int)t.require_int(A + ".embedding_length");
  c.d_ff = (int)t.require_int(A + ".feed_forward_length");
  c.n_head = (int)t.require_int(A + ".attention.head_count");
  c.n_ctx_train = (int)t.int_or(A + ".context_length", 4096);
  if (c.n_layer <= 0 || c.d_model <= 0 || c.n_head <= 0) fail("invalid deepseek2 shape: {} layers, width {}, {} heads", c.n_layer, c.d_model, c.n_head);
  c.n_kv_head = c.n_head;  // the MHA view; the cache holds one latent row per token
  c.norm = NormKind::RMSNorm;
  c.norm_eps = (float)t.float_or(A + ".attention.layer_norm_rms_epsilon", 1e-6);
  c.position = PositionKind::Rope;
  c.ffn = FfnKind::SwiGLU;

  MlaConfig& m = c.mla;
  m.q_lora_rank = (int)t.int_or(A + ".attention.q_lora_rank", 0);
  m.kv_lora_rank = (int)t.require_int(A + ".attention.kv_lora_rank");
  m.qk_rope = (int)t.require_int(A + ".rope.dimension_count");
  const std::string kl = legacy ? ".attention.key_length" : ".attention.key_length_mla";
  const std::string vl = legacy ? ".attention.value_length" : ".attention.value_length_mla";
  c.head_dim_k = (int)t.require_int(A + kl);
  c.head_dim_v = (int)t.require_int(A + vl);
  m.qk_nope = c.head_dim_k - m.qk_rope;
  m.v_head_dim = c.head_dim_v;
  if (m.kv_lora_rank <= 0 || m.q_lora_rank < 0 || m.qk_rope <= 0 || m.qk_rope % 2 != 0 || m.qk_nope <= 0 ||
      m.v_head_dim <= 0)
    fail("invalid MLA shape: kv_lora_rank {}, q_lora_rank {}, {} rope dims (even, > 0) of key length {}, value length {}",
         m.kv_lora_rank, m.q_lora_rank, m.qk_rope, c.head_dim_k, c.head_dim_v);
  if (!legacy) {  // the cache shape llama.cpp derives from the same file
    const int64_t k = t.int_or(A + ".attention.key_length", m.kv_lora_rank + m.qk_rope);
    const int64_t v = t.int_or(A + ".attention.value_length", m.kv_lora_rank);
    if (k != m.kv_lora_rank + m.qk_rope || v != m.kv_lora_rank)
      fail("inconsistent MLA metadata: key_length {} / value_length {}, expected kv_lora_rank + rope = {} / {}", k, v,
           m.kv_lora_rank + m.qk_rope, m.kv_lora_rank);
  }

  c.rope.pairing = RopePairing::Adjacent;
  c.rope.n_rot = m.qk_rope;
  c.rope.freq_base = (float)t.float_or(A + ".rope.freq_base", 10000.0);
  float mscale = 1.0f;
  if (t.file().get_string(A + ".rope.scaling.type").value_or("none") == "yarn") {
    c.rope.yarn_factor = (float)t.float_or(A + ".rope.scaling.factor", 1.0);
    c.rope.yarn_orig_ctx = (int)t.int_or(A + ".rope.scaling.original_context_length", c.n_ctx_train);
    c.rope.yarn_beta_fast = (float)t.float_or(A + ".rope.scaling.yarn_beta_fast", 32.0);
    c.rope.yarn_beta_slow = (float)t.float_or(A + ".rope.scaling.yarn_beta_slow", 1.0);
    if (c.rope.yarn_factor < 1 || c.rope.yarn_orig_ctx <= 0)
      fail("invalid YaRN parameters: factor {}, original context {}", c.rope.yarn_factor, c.rope.yarn_orig_ctx);
    // yarn_log_multiplier is written as 0.1 * mscale_all_dim (DeepSeek's
    // config); the softmax temperature grows with the log of the factor.
    mscale = 1.0f + (float)t.float_or(A + ".rope.scaling.yarn_log_multiplier", 0.0) * std::log(c.rope.yarn_factor);
  }
  c.attn_scale = mscale * mscale / std::sqrt((float)c.head_dim_k);

  const int n_dense = (int)t.int_or(A + ".leading_dense_block_count", 0);
  if (n_dense < 0 || n_dense > c.n_layer) fail("leading_dense_block_count {} outside [0, {}]", n_dense, c.n_layer);
  if (n_dense < c.n_layer) {
    MoeConfig& e = c.moe;
    e.n_expert = (int)t.require_int(A + ".expert_count");
    e.n_expert_used = (int)t.require_int(A + ".expert_used_count");
    e.n_expert_shared = (int)t.int_or(A + ".expert_shared_count", 0);
    e.d_ff_exp = (int)t.require_int(A + ".expert_feed_forward_length");
    e.weights_scale = (float)t.float_or(A + ".expert_weights_scale", 1.0);
    if (e.weights_scale == 0) e.weights_scale = 1.0f;  // llama.cpp: 0 = unset
    e.weights_norm = t.file().get_bool(A + ".expert_weights_norm").value_or(false);
    const int64_t gating = t.int_or(A + ".expert_gating_func", 1);  // 0 = unset: softmax (V2)
    if (gating < 0 || gating > 2) fail("unsupported expert_gating_func {} (1 softmax, 2 sigmoid)", gating);
    e.gating = gating == 2 ? MoeGating::Sigmoid : MoeGating::Softmax;
    if (e.n_expert <= 0 || e.n_expert_used <= 0 || e.n_expert_used > e.n_expert || e.n_expert_shared < 0 ||
        e.d_ff_exp <= 0)
      fail("invalid MoE shape: {} experts, {} used, {} shared, width {}", e.n_expert, e.n_expert_used,
           e.n_expert_shared, e.d_ff_exp);
  }
}

void load_mla(const TensorLoader& t, const ModelConfig& c, const std::string& p, MlaWeights& W,
              std::vector<std::vector<float>>& derived) {
  const MlaConfig& m = c.mla;
  const int d = c.d_model, H = c.n_head, dc = m.kv_lora_rank, P = m.qk_nope, V = m.v_head_dim;
  if (m.q_lora_rank > 0) {
    W.wq_a = t.matrix(p + "attn_q_a.weight", m.q_lora_rank, d);
    W.q_a_norm = t.vec(p + "attn_q_a_norm.weight", m.q_lora_rank);
    W.wq_b = t.matrix(p + "attn_q_b.weight", c.q_dim(), m.q_lora_rank);
  } else {
    W.wq = t.matrix(p + "attn_q.weight", c.q_dim(), d);
  }
  W.wkv_a = t.matrix(p + "attn_kv_a_mqa.weight", dc + m.qk_rope, d);
  W.kv_a_norm = t.vec(p + "attn_kv_a_norm.weight", dc);
  W.k_b = t.optional_matrices(p + "attn_k_b.weight", H, dc, P);
  W.v_b = t.optional_matrices(p + "attn_v_b.weight", H, V, dc);
  if (!W.k_b.empty() && !W.v_b.empty()) return;
  const WeightMatrix kv_b = t.optional_matrix(p + "attn_kv_b.weight", (int64_t)H * (P + V), dc);
  if (kv_b.rows == 0)
    fail("model file lacks tensors '{}attn_k_b.weight' and '{}attn_v_b.weight' (or the legacy '{}attn_kv_b.weight')", p,
         p, p);
  // Legacy fused layout, per head [W_UK (P rows) ; W_UV (V rows)] over d_c:
  // W_UV is a row block as it is; W_UK^T is built once here in f32.
  W.k_b.clear();
  W.v_b.clear();
  std::vector<float> row(dc);
  for (int h = 0; h < H; ++h) {
    std::vector<float>& kt = derived.emplace_back((size_t)dc * P);  // [d_c][P]
    for (int r = 0; r < P; ++r) {
      get_row(kv_b, (int64_t)h * (P + V) + r, row.data());
      for (int i = 0; i < dc; ++i) kt[(size_t)i * P + r] = row[i];
    }
    W.k_b.push_back({GgmlType::F32, dc, P, kt.data(), (size_t)P * sizeof(float)});
    W.v_b.push_back(row_block(kv_b, (int64_t)h * (P + V) + P, V));
  }
}

void load_moe(const TensorLoader& t, const ModelConfig& c, const std::string& p, MoeWeights& W) {
  const MoeConfig& e = c.moe;
  const int d = c.d_model;
  W.gate_inp = t.matrix(p + "ffn_gate_inp.weight", e.n_expert, d);
  W.exp_probs_b = t.optional_vec(p + "exp_probs_b.bias", e.n_expert);
  W.gate = t.optional_matrices(p + "ffn_gate_exps.weight", e.n_expert, e.d_ff_exp, d);
  W.up = t.optional_matrices(p + "ffn_up_exps.weight", e.n_expert, e.d_ff_exp, d);
  W.down = t.optional_matrices(p + "ffn_down_exps.weight", e.n_expert, d, e.d_ff_exp);
  for (const char* name : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
    if (!t.file().find_tensor(p + name + ".weight"))
      fail("model file lacks tensor '{}{}.weight' (expert_count is {})", p, name, e.n_expert);
  if (e.n_expert_shared > 0) {
    const int64_t ds = (int64_t)e.n_expert_shared * e.d_ff_exp;
    W.gate_shexp = t.matrix(p + "ffn_gate_shexp.weight", ds, d);
    W.up_shexp = t.matrix(p + "ffn_up_shexp.weight", ds, d);
    W.down_shexp = t.matrix(p + "ffn_down_shexp.weight", d, ds);
  }
}

void load_deepseek2(const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
  // Legacy files carry the fused attn_kv_b and no *_mla keys.
  const bool legacy = !t.file().get_int(A + ".attention.key_length_mla").has_value();
  load_config(t, c, legacy);

  const gguf::TensorInfo* emb = t.file().find_tensor("token_embd.weight");
  if (!emb) fail("model file lacks tensor 'token_embd.weight'");
  c.n_vocab = (int)emb->ne[1];
  const int d = c.d_model;
  w.tok_embd = t.matrix("token_embd.weight", c.n_vocab, d);
  w.out_norm = t.vec("output_norm.weight", d);
  w.output = t.optional_matrix("output.weight", c.n_vocab, d);
  if (w.output.rows == 0) w.output = w.tok_embd;

  const int n_dense = (int)t.int_or(A + ".leading_dense_block_count", 0);
  w.layers.resize(c.n_layer);
  c.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = w.layers[i];
    c.layers[i].attn = AttnBlock::MLA;
    L.attn_norm = t.vec(p + "attn_norm.weight", d);
    load_mla(t, c, p, L.mla, w.derived);
    L.wo = t.matrix(p + "attn_output.weight", d, c.attn_dim());
    L.ffn_norm = t.vec(p + "ffn_norm.weight", d);
    if (i < n_dense) {
      c.layers[i].ffn = FfnBlock::Dense;
      L.w_gate = t.matrix(p + "ffn_gate.weight", c.d_ff, d);
      L.w_up = t.matrix(p + "ffn_up.weight", c.d_ff, d);
      L.w_down = t.matrix(p + "ffn_down.weight", d, c.d_ff);
    } else {
      c.layers[i].ffn = FfnBlock::MoE;
      load_moe(t, c, p, L.moe);
    }
  }
}

}  // namespace

void register_deepseek2(ArchTable& table) { table.emplace_back("deepseek2", load_deepseek2); }

}  // namespace kvforge
