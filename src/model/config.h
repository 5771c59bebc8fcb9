#pragma once
// Architecture-independent description of a decoder-only transformer. Each
// architecture loader (arch_*.cpp) fills it from GGUF metadata; the forward
// pass reads only this, never the architecture name.
#include <cstdint>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "ops/rope.h"

namespace kvforge {

enum class NormKind { RMSNorm, LayerNorm };
enum class PositionKind { Rope, Learned };
enum class FfnKind { SwiGLU, GELU, GeGLU };  // GeGLU: gelu_tanh(gate) * up (Gemma)

// Which RoPE a layer applies (PositionKind::Rope models).
enum class LayerRope : uint8_t {
  Main,   // ModelConfig::rope
  Local,  // ModelConfig::rope_local (Gemma 3's sliding-window layers)
  None,   // no position information in this layer (SmolLM3's every 4th layer)
};

// The kind of each block, chosen per layer at load; Context::forward runs
// one function per kind.
enum class AttnBlock : uint8_t { GQA, MLA };
enum class FfnBlock : uint8_t { Dense, MoE };

// What may differ between the layers of one model, chosen at load.
struct LayerConfig {
  AttnBlock attn = AttnBlock::GQA;
  FfnBlock ffn = FfnBlock::Dense;
  LayerRope rope = LayerRope::Main;
  // Sliding-window attention: a query sees only the last `window` positions
  // (itself included); 0 = the whole history. The cache keeps only that
  // many cells for the layer (kv_layout.h, limit_layer_window).
  int32_t window = 0;
};

// Multi-head Latent Attention (DeepSeek-V2/V3, SPEC.md §3); kv_lora_rank == 0: none.
struct MlaConfig {
  int q_lora_rank = 0;   // 0: queries straight from W_q
  int kv_lora_rank = 0;  // d_c, the cached latent
  int qk_nope = 0;       // P: per-head query/key dims without RoPE (0: all rotate)
  int qk_rope = 0;       // R: RoPE dims of a query head and of a rope key
  // Rope keys in a cached row: 1 shared by all heads (DeepSeek), or one per
  // KV head of a converted GQA model (query head h reads key h * n / n_head).
  int n_rope_keys = 1;
  int v_head_dim = 0;    // V

  int rope_width() const { return n_rope_keys * qk_rope; }  // the row's RoPE part
};

// Mixture of experts in the layers whose FfnBlock is MoE.
enum class MoeGating { Softmax, Sigmoid };
struct MoeConfig {
  int n_expert = 0;
  int n_expert_used = 0;    // top-k
  int n_expert_shared = 0;  // always-on experts, one SwiGLU of n_expert_shared * d_ff_exp
  int d_ff_exp = 0;         // hidden width of one expert
  MoeGating gating = MoeGating::Softmax;
  bool weights_norm = false;   // selected weights renormalised to sum 1
  float weights_scale = 1.0f;  // then multiplied by this
};

struct ModelConfig {
  std::string arch;   // general.architecture (for display only)
  std::string name;   // general.name
  int n_vocab = 0;
  int n_ctx_train = 0;
  int d_model = 0;     // embedding width
  int n_layer = 0;
  int n_head = 0;      // query heads
  int n_kv_head = 0;   // key/value heads (GQA when < n_head)
  int head_dim_k = 0;  // per head: queries and keys (the q.k dot)
  int head_dim_v = 0;  // per head: values and the attention output
  int d_ff = 0;        // feed-forward hidden width

  NormKind norm = NormKind::RMSNorm;
  float norm_eps = 1e-5f;
  PositionKind position = PositionKind::Rope;
  RopeParams rope;
  FfnKind ffn = FfnKind::SwiGLU;
  float attn_scale = 0;  // softmax scale, usually 1/sqrt(head_dim_k)
  MlaConfig mla;         // layers with AttnBlock::MLA (LayerConfig)
  MoeConfig moe;         // layers with FfnBlock::MoE

  std::vector<LayerConfig> layers;  // [n_layer]; Model::load fills defaults when a loader sets none
  RopeParams rope_local;            // only for LayerRope::Local layers
  // LongRoPE (Phi-3.5, Phi-4-mini): a context longer than rope_long_ctx
  // rotates with these per-pair factors instead of rope.freq_factors.
  std::vector<float> rope_factors_long;
  int32_t rope_long_ctx = 0;
  float embd_scale = 0;     // token embeddings are multiplied by it (Gemma: sqrt(d_model)); 0 = not scaled
  float attn_softcap = 0;   // attention scores s -> cap * tanh(s / cap) before the softmax (Gemma 2); 0 = off
  float logit_softcap = 0;  // the same on the output logits (Gemma 2); 0 = off

  int q_dim() const { return n_head * head_dim_k; }       // queries of one token
  int k_dim() const { return n_kv_head * head_dim_k; }    // keys of one token
  int v_dim() const { return n_kv_head * head_dim_v; }    // values of one token
  int attn_dim() const { return n_head * head_dim_v; }    // attention output of one token (W_o's input)
  // What one token caches per layer: per KV head K and V rows, or for MLA
  // one latent row [c_KV | k_pe] whose first kv_lora_rank values are V.
  KvShape kv_shape() const {
    if (mla.kv_lora_rank > 0) return {n_layer, 1, mla.kv_lora_rank + mla.rope_width(), mla.kv_lora_rank, true};
    return {n_layer, n_kv_head, head_dim_k, head_dim_v};
  }
};

}  // namespace kvforge
