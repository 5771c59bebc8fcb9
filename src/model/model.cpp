#include "model/model.h"

#include "model/arch_registry.h"
#include "util/error.h"

namespace kvforge {

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = gguf::File::open(path);
  const gguf::File& f = *m->file_;
  const auto arch = f.get_string("general.architecture");
  if (!arch) fail("'{}' has no general.architecture key: not a model file", path);
  m->config_.arch = *arch;
  m->config_.name = f.get_string("general.name").value_or(*arch);
  find_arch_loader(*arch)(TensorLoader(f), m->config_, m->weights_);
  if (m->config_.layers.empty()) m->config_.layers.resize(m->config_.n_layer);
  if (options.repack) m->packed_.pack(m->weights_);
  m->tokenizer_ = Tokenizer::from_gguf(f);
  if (m->tokenizer_->n_vocab() > m->config_.n_vocab)
    fail("tokenizer has {} tokens but the embedding only {} rows", m->tokenizer_->n_vocab(), m->config_.n_vocab);
  return m;
}

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const auto& t : file_->tensors()) n += t.nbytes;
  return n;
}

}  // namespace kvforge
