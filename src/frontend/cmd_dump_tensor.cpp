// `kvforge dump-tensor FILE NAME -o OUT.npy`: one tensor, dequantized to
// float32, as a NumPy array — the hook for checking our dequantization
// against reference implementations.
#include <memory>
#include <string>
#include <vector>

#include "frontend/command.h"
#include "gguf/gguf.h"
#include "util/error.h"
#include "util/npy.h"

namespace kvforge::cli {
namespace {

void dump_tensor(const std::string& path, const std::string& name, const std::string& out) {
  auto f = gguf::File::open(path);
  const gguf::TensorInfo* t = f->find_tensor(name);
  if (!t) fail("{}: no tensor named '{}' (see `kvforge inspect`)", path, name);
  const int64_t ne0 = t->ne[0];
  const int64_t rows = t->n_elements() / (ne0 ? ne0 : 1);
  std::vector<float> data((size_t)t->n_elements());
  const size_t rb = row_bytes(t->type, ne0);
  for (int64_t r = 0; r < rows && ne0 > 0; ++r)
    dequantize_row(t->type, t->data + (size_t)r * rb, data.data() + (size_t)r * (size_t)ne0, ne0);
  // NumPy is row-major with the last axis contiguous, so the shape is ne reversed.
  std::vector<int64_t> shape;
  for (int d = t->n_dims - 1; d >= 0; --d) shape.push_back(t->ne[d]);
  write_npy_f32(out, data.data(), shape);
}

CommandRegistrar reg(21, [](CLI::App& root) {
  auto* c = root.add_subcommand("dump-tensor", "Write one tensor of a GGUF file, dequantized to float32, as .npy");
  c->footer(
      "The .npy shape is the GGUF ne list reversed (a weight with ne = [n_in, n_out]\n"
      "becomes an array of shape (n_out, n_in)), matching gguf-py's GGUFReader.");
  auto path = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  c->add_option("FILE", *path, "GGUF model file")->required();
  c->add_option("NAME", *name, "Tensor name, e.g. token_embd.weight")->required();
  c->add_option("-o,--output", *out, "Output .npy path")->required();
  c->callback([path, name, out] { dump_tensor(*path, *name, *out); });
});

}  // namespace
}  // namespace kvforge::cli
