#include "tokenizer/tokenizer.h"

#include "util/error.h"

namespace kvforge {

std::unique_ptr<Tokenizer> make_bpe_tokenizer(VocabData data);
std::unique_ptr<Tokenizer> make_spm_tokenizer(VocabData data);

std::unique_ptr<Tokenizer> Tokenizer::create(VocabData data) {
  if (data.model == "gpt2") return make_bpe_tokenizer(std::move(data));
  if (data.model == "llama") return make_spm_tokenizer(std::move(data));
  fail("unsupported tokenizer.ggml.model '{}' (supported: gpt2, llama)", data.model);
}

}  // namespace kvforge
