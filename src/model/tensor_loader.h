#pragma once
// Fetches tensors from a GGUF by name with shape and type checks, so the
// architecture loaders stay declarative and every mismatch is a clear error.
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/weights.h"

namespace kvforge {

class TensorLoader {
 public:
  explicit TensorLoader(const gguf::File& f) : f_(f) {}

  // A [rows][cols] matrix (ne = {cols, rows}). Throws if missing or misshapen.
  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // Same, but rows == 0 when the tensor is absent.
  WeightMatrix optional_matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // A 3-D tensor [n][rows][cols] (ne = {cols, rows, n}: MoE experts) as n
  // matrices over its slices; empty when absent. Throws if misshapen.
  std::vector<WeightMatrix> optional_matrices(const std::string& name, int64_t n, int64_t rows, int64_t cols) const;
  // A 1-D tensor of n elements converted to f32. Throws if missing.
  Vec vec(const std::string& name, int64_t n) const;
  Vec optional_vec(const std::string& name, int64_t n) const;

  // Metadata helpers with errors naming the key.
  int64_t require_int(const std::string& key) const;
  int64_t int_or(const std::string& key, int64_t dflt) const;
  double float_or(const std::string& key, double dflt) const;

  const gguf::File& file() const { return f_; }

 private:
  const gguf::File& f_;
};

}  // namespace kvforge
