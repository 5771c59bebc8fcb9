#include "model/tensor_loader.h"

#include "util/error.h"

namespace kvforge {

WeightMatrix TensorLoader::optional_matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const gguf::TensorInfo* t = f_.find_tensor(name);
  if (!t) return {};
  if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
    fail("tensor '{}' has shape [{}, {}], expected [{}, {}] (ne0 = {})", name, t->ne[1], t->ne[0], rows, cols, cols);
  const TypeTraits& tt = type_traits(t->type);
  if (!tt.supported) fail("tensor '{}' has type {}, which kvforge cannot compute with", name, tt.name);
  if (cols % tt.block_size != 0)
    fail("tensor '{}': row length {} is not a multiple of the {} block size {}", name, cols, tt.name, tt.block_size);
  WeightMatrix w;
  w.type = t->type;
  w.rows = rows;
  w.cols = cols;
  w.data = t->data;
  w.row_stride = row_bytes(t->type, cols);
  return w;
}

std::vector<WeightMatrix> TensorLoader::optional_matrices(const std::string& name, int64_t n, int64_t rows,
                                                          int64_t cols) const {
  const gguf::TensorInfo* t = f_.find_tensor(name);
  if (!t) return {};
  if (t->n_dims != 3 || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n)
    fail("tensor '{}' has shape [{}, {}, {}] (n_dims {}), expected [{}, {}, {}]", name, t->ne[2], t->ne[1], t->ne[0],
         t->n_dims, n, rows, cols);
  const TypeTraits& tt = type_traits(t->type);
  if (!tt.supported) fail("tensor '{}' has type {}, which kvforge cannot compute with", name, tt.name);
  if (cols % tt.block_size != 0)
    fail("tensor '{}': row length {} is not a multiple of the {} block size {}", name, cols, tt.name, tt.block_size);
  // The slices are consecutive [rows][cols] matrices.
  WeightMatrix all{t->type, n * rows, cols, t->data, row_bytes(t->type, cols)};
  std::vector<WeightMatrix> out;
  for (int64_t e = 0; e < n; ++e) out.push_back(row_block(all, e * rows, rows));
  return out;
}

WeightMatrix TensorLoader::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  WeightMatrix w = optional_matrix(name, rows, cols);
  if (w.rows == 0) fail("model file lacks tensor '{}'", name);
  return w;
}

Vec TensorLoader::optional_vec(const std::string& name, int64_t n) const {
  const gguf::TensorInfo* t = f_.find_tensor(name);
  if (!t) return {};
  if (t->n_elements() != n) fail("tensor '{}' has {} elements, expected {}", name, t->n_elements(), n);
  if (!type_traits(t->type).supported) fail("tensor '{}' has unsupported type {}", name, type_traits(t->type).name);
  Vec v(n);
  dequantize_row(t->type, t->data, v.data(), n);
  return v;
}

Vec TensorLoader::vec(const std::string& name, int64_t n) const {
  Vec v = optional_vec(name, n);
  if (v.empty()) fail("model file lacks tensor '{}'", name);
  return v;
}

int64_t TensorLoader::require_int(const std::string& key) const {
  auto v = f_.get_int(key);
  if (!v) fail("model file lacks metadata key '{}'", key);
  return *v;
}

int64_t TensorLoader::int_or(const std::string& key, int64_t dflt) const { return f_.get_int(key).value_or(dflt); }

double TensorLoader::float_or(const std::string& key, double dflt) const { return f_.get_float(key).value_or(dflt); }

}  // namespace kvforge
