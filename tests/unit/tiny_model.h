#pragma once
// Tiny random models written to GGUF by the tests, so the whole forward pass
// (and every cache policy) can be exercised in milliseconds, also under the
// sanitizers. Byte-level vocabulary: 256 byte tokens + <|endoftext|>.
#include <string>

#include "ops/ggml_types.h"

namespace kvforge::testing {

struct TinyModelSpec {
  std::string arch = "llama";  // "llama" or "gpt2"
  int n_layer = 2;
  int d_model = 64;
  int n_head = 4;
  int n_kv_head = 2;           // llama only
  int d_ff = 128;
  int n_ctx_train = 256;
  GgmlType weight_type = GgmlType::Q4_1;  // matrices; norms stay F32
  unsigned seed = 1;
};

// Writes the model to `path` (overwrites) and returns path.
std::string write_tiny_model(const std::string& path, const TinyModelSpec& spec);

// A fresh path in the test temp dir.
std::string temp_path(const std::string& name);

}  // namespace kvforge::testing
