#pragma once
// A loaded model: the mapped GGUF file, its configuration, weight views and
// tokenizer. Immutable after load; any number of Contexts can share it.
#include <memory>
#include <string>

#include "gguf/gguf.h"
#include "model/config.h"
#include "model/packed_weights.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace kvforge {

class Model {
 public:
  // Throws kvforge::Error with a one-line reason (missing file, corrupt GGUF,
  // unknown architecture, unsupported tensor type, missing tensors...).
  struct LoadOptions {
    // Repack Q4_1/Q8_0 matrices into the interleaved layout the fast kernels
    // read (same bytes, original pages released). Off: the file's layout
    // (for A/B measurements).
    bool repack = true;
  };
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options);
  static std::unique_ptr<Model> load(const std::string& path) { return load(path, LoadOptions{}); }

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const gguf::File& file() const { return *file_; }
  size_t weight_bytes() const;  // bytes of all tensors in the file

 private:
  Model() = default;
  std::unique_ptr<gguf::File> file_;
  ModelConfig config_;
  ModelWeights weights_;
  PackedWeights packed_;  // owns the repacked matrices weights_ points at
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace kvforge
