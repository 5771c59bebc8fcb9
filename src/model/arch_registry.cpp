#include "model/arch_registry.h"

#include <map>

#include "util/error.h"

namespace kvforge {

namespace {
const std::map<std::string, ArchLoader>& registry() {
  static const std::map<std::string, ArchLoader> r = [] {
    ArchTable table;
    register_llama_family(table);
    register_gpt2(table);
    register_deepseek2(table);
    register_gemma(table);
    register_phi3(table);
    return std::map<std::string, ArchLoader>(table.begin(), table.end());
  }();
  return r;
}
}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> v;
  for (auto& [k, _] : registry()) v.push_back(k);
  return v;
}

const ArchLoader& find_arch_loader(const std::string& arch) {
  auto it = registry().find(arch);
  if (it == registry().end())
    fail("unsupported model architecture '{}' (supported: {})", arch, fmt::join(supported_architectures(), ", "));
  return it->second;
}

}  // namespace kvforge
