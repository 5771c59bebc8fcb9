#pragma once
// The llama-family loader, shared by the architectures that add to it
// (Phi-3, Gemma): hyperparameters under "<arch>.", RMSNorm, RoPE with the
// given pairing, SwiGLU, and the tensors llama.cpp names for them: separate
// or fused Q/K/V ("attn_qkv"), optional Q/K/V biases and Q/K norms, separate
// or fused gate/up ("ffn_up" of 2 x d_ff rows), tied or separate output.
#include <string>

#include "model/arch_registry.h"

namespace kvforge {

void load_llama_family(const TensorLoader& t, ModelConfig& c, ModelWeights& w, const std::string& arch,
                       RopePairing pairing);

}  // namespace kvforge
