// Gemma 2 and Gemma 3: the llama-family tensors (arch_llama.h) plus
//  - an RMSNorm of each block's output before its residual add
//    ("post_attention_norm", "post_ffw_norm"); the converter stores Gemma's
//    (1 + w) norm weights already shifted, so every norm is a plain RMSNorm,
//  - token embeddings scaled by sqrt(d_model), GeGLU feed-forward (GELU-tanh
//    gate), RoPE over halves (Q/K rows not permuted), tied output,
//  - interleaved sliding-window layers with llama.cpp's fixed patterns:
//    layer l slides when l % pattern < pattern - 1 (Gemma 2: pattern 2, the
//    even layers; Gemma 3: pattern 6, five of every six). Their window
//    becomes the layer's KV-cache window (LayerConfig::window),
//  - Gemma 2: attention scores and final logits soft-capped,
//  - Gemma 3: Q/K norms; sliding layers rotate with their own RoPE (base
//    10000, unscaled), global layers with rope.freq_base and its scaling.
// Softmax scale 1/sqrt(head_dim), except the 27B models, whose
// query_pre_attn_scalar is d_model / n_head (llama.cpp tells them by layer
// count, as here: the GGUF does not carry it).
#include <cmath>

#include "model/arch_llama.h"
#include "util/error.h"

namespace kvforge {

namespace {

struct GemmaVariant {
  const char* arch;
  int swa_pattern;
  int32_t default_window;  // 0: the key is required
  int n_layer_27b;
};

void load_gemma(const TensorLoader& t, ModelConfig& c, ModelWeights& w, const GemmaVariant& v) {
  const std::string a = v.arch;
  load_llama_family(t, c, w, a, RopePairing::Halves);
  c.norm_eps = (float)t.float_or(a + ".attention.layer_norm_rms_epsilon", 1e-6);
  c.ffn = FfnKind::GeGLU;
  c.embd_scale = std::sqrt((float)c.d_model);
  if (c.n_layer == v.n_layer_27b) c.attn_scale = 1.0f / std::sqrt((float)(c.d_model / c.n_head));

  const int64_t window = v.default_window > 0 ? t.int_or(a + ".attention.sliding_window", v.default_window)
                                              : t.require_int(a + ".attention.sliding_window");
  if (window <= 0 || window > INT32_MAX) fail("invalid {}.attention.sliding_window {}", a, window);
  c.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    if (l % v.swa_pattern == v.swa_pattern - 1) continue;  // a global layer
    c.layers[l].window = (int32_t)window;
  }
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.layers[l].attn_post_norm = t.vec(p + "post_attention_norm.weight", c.d_model);
    w.layers[l].ffn_post_norm = t.vec(p + "post_ffw_norm.weight", c.d_model);
  }
}

}  // namespace

void register_gemma(ArchTable& table) {
  table.emplace_back("gemma2", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_gemma(t, c, w, {"gemma2", 2, 4096, 46});
    // llama.cpp's defaults when the keys are absent (the converter writes them).
    c.attn_softcap = (float)t.float_or("gemma2.attn_logit_softcapping", 50.0);
    c.logit_softcap = (float)t.float_or("gemma2.final_logit_softcapping", 30.0);
  });
  table.emplace_back("gemma3", [](const TensorLoader& t, ModelConfig& c, ModelWeights& w) {
    load_gemma(t, c, w, {"gemma3", 6, 0, 62});
    c.logit_softcap = (float)t.float_or("gemma3.final_logit_softcapping", 0.0);
    for (const LayerWeights& L : w.layers)
      if (L.q_norm.empty() || L.k_norm.empty()) fail("gemma3 model lacks its attn_q_norm/attn_k_norm tensors");
    c.rope_local = RopeParams{RopePairing::Halves, c.rope.n_rot, 10000.0f, {}};
    for (LayerConfig& lc : c.layers)
      if (lc.window > 0) lc.rope = LayerRope::Local;
  });
}

}  // namespace kvforge
