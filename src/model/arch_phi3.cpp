// Phi-3 (and Phi-4-mini, same GGUF architecture "phi3"): the llama family
// with fused Q/K/V ("attn_qkv") and fused gate/up ("ffn_up", gate rows
// first), RoPE over halves, possibly partial (rope.dimension_count < head
// dim), and a sliding window over every layer when
// phi3.attention.sliding_window > 0 (the converter writes 0 for none).
// LongRoPE (Phi-3-*-128k, Phi-3.5, Phi-4-mini): per-pair frequency factors
// "rope_factors_short" for contexts up to rope.scaling.original_context_length
// and "rope_factors_long" above it (chosen by the context size, as
// llama.cpp), and cos/sin scaled by rope.scaling.attn_factor.
#include "model/arch_llama.h"
#include "util/error.h"

namespace kvforge {

void register_phi3(ArchTable& table) {
  table.emplace_back("phi3", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_llama_family(t, c, w, "phi3", RopePairing::Halves);
    c.rope_factors_long = t.optional_vec("rope_factors_long.weight", c.rope.n_rot / 2);
    if (!c.rope_factors_long.empty()) {
      c.rope.freq_factors = t.vec("rope_factors_short.weight", c.rope.n_rot / 2);
      c.rope.attn_factor = (float)t.float_or("phi3.rope.scaling.attn_factor", 1.0);
      c.rope_long_ctx = (int32_t)t.int_or("phi3.rope.scaling.original_context_length", c.n_ctx_train);
    }
    const int64_t window = t.int_or("phi3.attention.sliding_window", 0);
    if (window < 0 || window > INT32_MAX) fail("invalid phi3.attention.sliding_window {}", window);
    c.layers.resize(c.n_layer);
    for (LayerConfig& lc : c.layers) lc.window = (int32_t)window;
  });
}

}  // namespace kvforge
