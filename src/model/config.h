#pragma once
// Architecture-independent description of a decoder-only transformer. Each
// architecture loader (arch_*.cpp) fills it from GGUF metadata; the forward
// pass reads only this, never the architecture name.
#include <string>

#include "ops/rope.h"

namespace kvforge {

enum class NormKind { RMSNorm, LayerNorm };
enum class PositionKind { Rope, Learned };
enum class FfnKind { SwiGLU, GELU };

struct ModelConfig {
  std::string arch;   // general.architecture (for display only)
  std::string name;   // general.name
  int n_vocab = 0;
  int n_ctx_train = 0;
  int d_model = 0;     // embedding width
  int n_layer = 0;
  int n_head = 0;      // query heads
  int n_kv_head = 0;   // key/value heads (GQA when < n_head)
  int head_dim = 0;
  int d_ff = 0;        // feed-forward hidden width

  NormKind norm = NormKind::RMSNorm;
  float norm_eps = 1e-5f;
  PositionKind position = PositionKind::Rope;
  RopeParams rope;
  FfnKind ffn = FfnKind::SwiGLU;
  float attn_scale = 0;  // softmax scale, usually 1/sqrt(head_dim)

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_kv_head * head_dim; }
};

}  // namespace kvforge
