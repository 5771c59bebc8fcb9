// Phi-3 (and Phi-4-mini, same GGUF architecture "phi3"): the llama family
// with fused Q/K/V ("attn_qkv") and fused gate/up ("ffn_up", gate rows
// first), RoPE over halves, possibly partial (rope.dimension_count < head
// dim), and a sliding window over every layer when
// phi3.attention.sliding_window > 0 (the converter writes 0 for none).
// LongRoPE models (rope_factors_long/short, Phi-3-*-128k, Phi-3.5) are refused:
// their factors and attention scaling depend on the context size.
#include "model/arch_llama.h"
#include "util/error.h"

namespace kvforge {

void register_phi3(ArchTable& table) {
  table.emplace_back("phi3", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    if (t.file().find_tensor("rope_factors_long.weight"))
      fail("phi3 model with LongRoPE scaling (rope_factors_long) is not supported");
    load_llama_family(t, c, w, "phi3", RopePairing::Halves);
    const int64_t window = t.int_or("phi3.attention.sliding_window", 0);
    if (window < 0 || window > INT32_MAX) fail("invalid phi3.attention.sliding_window {}", window);
    c.layers.resize(c.n_layer);
    for (LayerConfig& lc : c.layers) lc.window = (int32_t)window;
  });
}

}  // namespace kvforge
