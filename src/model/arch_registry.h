#pragma once
// Maps general.architecture to the loader that fills ModelConfig and
// ModelWeights. Adding an architecture = one arch_*.cpp with a registration;
// nothing else in the engine names architectures.
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tensor_loader.h"
#include "model/weights.h"

namespace kvforge {

using ArchLoader = std::function<void(const TensorLoader& t, ModelConfig& cfg, ModelWeights& w)>;

// Each arch_*.cpp defines one of these; the registry calls them all once.
// (An explicit list rather than static self-registration, which a static
// library would silently drop at link time.)
using ArchTable = std::vector<std::pair<std::string, ArchLoader>>;
void register_llama_family(ArchTable& table);
void register_gpt2(ArchTable& table);
void register_deepseek2(ArchTable& table);
void register_gemma(ArchTable& table);
void register_phi3(ArchTable& table);

// Throws kvforge::Error naming the supported architectures when `arch` is unknown.
const ArchLoader& find_arch_loader(const std::string& arch);
std::vector<std::string> supported_architectures();

}  // namespace kvforge
