#include "model/mla_converted.h"

#include "util/error.h"

namespace kvforge {

bool load_converted_mla_config(const TensorLoader& t, ModelConfig& c) {
  if (!t.file().has(mla_key::kv_lora_rank)) return false;
  MlaConfig& m = c.mla;
  m.kv_lora_rank = (int)t.require_int(mla_key::kv_lora_rank);
  m.qk_rope = (int)t.require_int(mla_key::rope_dims);
  m.qk_nope = c.head_dim_k - m.qk_rope;
  m.v_head_dim = c.head_dim_v;
  m.n_rope_keys = c.n_kv_head;
  if (m.kv_lora_rank <= 0 || m.qk_rope <= 0 || m.qk_rope % 2 != 0 || m.qk_nope < 0 || c.rope.n_rot != c.head_dim_k)
    fail("invalid converted MLA shape: latent {}, {} rope dims per KV head (even, > 0) of head dim {}, RoPE over {}",
         m.kv_lora_rank, m.qk_rope, c.head_dim_k, c.rope.n_rot);
  const size_t n_pairs = (size_t)c.n_layer * m.rope_width() / 2;
  const std::vector<int64_t> pairs = t.file().get_int_array(mla_key::rope_pairs);
  if (pairs.size() != n_pairs)
    fail("{} has {} entries, expected {} (layers x KV heads x rope dims / 2)", mla_key::rope_pairs, pairs.size(),
         n_pairs);
  for (int64_t p : pairs)
    if (p < 0 || p >= c.rope.n_rot / 2) fail("{}: pair {} outside [0, {})", mla_key::rope_pairs, p, c.rope.n_rot / 2);
  c.layers.resize(c.n_layer);
  for (LayerConfig& lc : c.layers) lc.attn = AttnBlock::MLA;
  return true;
}

void load_converted_mla_layer(const TensorLoader& t, const ModelConfig& c, int layer, MlaWeights& W) {
  const MlaConfig& m = c.mla;
  const int d = c.d_model, G = c.n_kv_head, D = m.kv_lora_rank, lat = D + m.rope_width();
  const std::string p = "blk." + std::to_string(layer) + ".";
  W.wq = t.matrix(p + "attn_q.weight", c.q_dim(), d);
  W.bq = t.optional_vec(p + "attn_q.bias", c.q_dim());
  W.wkv_a = t.matrix(p + "attn_kv_a_mqa.weight", lat, d);
  W.bkv_a = t.optional_vec(p + "attn_kv_a_mqa.bias", lat);
  if (m.qk_nope > 0) {
    W.k_b = t.optional_matrices(p + "attn_k_b.weight", G, D, m.qk_nope);
    if (W.k_b.empty()) fail("model file lacks tensor '{}attn_k_b.weight'", p);
  }
  W.v_b = t.optional_matrices(p + "attn_v_b.weight", G, m.v_head_dim, D);
  if (W.v_b.empty()) fail("model file lacks tensor '{}attn_v_b.weight'", p);
  const std::vector<int64_t> pairs = t.file().get_int_array(mla_key::rope_pairs);  // checked by the config
  const size_t n = (size_t)m.rope_width() / 2;
  W.rope_pairs.assign(pairs.begin() + (ptrdiff_t)(n * layer), pairs.begin() + (ptrdiff_t)(n * (layer + 1)));
}

}  // namespace kvforge
