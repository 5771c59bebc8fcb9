#include "util/op_timer.h"

namespace kvforge {

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed: return "embeddings";
    case Op::Norm: return "norms";
    case Op::QkvMatmul: return "matmul Q/K/V";
    case Op::QkNorm: return "Q/K head norms";
    case Op::Rope: return "rope";
    case Op::KvWrite: return "KV cache write";
    case Op::Attention: return "attention";
    case Op::OMatmul: return "matmul attn output";
    case Op::Residual: return "residual adds";
    case Op::GateUpMatmul: return "matmul ffn gate+up";
    case Op::DownMatmul: return "matmul ffn down";
    case Op::Moe: return "ffn MoE (whole block)";
    case Op::OutputMatmul: return "matmul output head";
    case Op::Quantize: return "activation quantization";
    case Op::PoolWait: return "pool hand-off + wait";
    case Op::kCount: break;
  }
  return "?";
}

}  // namespace kvforge
