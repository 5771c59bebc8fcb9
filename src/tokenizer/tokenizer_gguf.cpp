// Everything the tokenizer layer reads from GGUF metadata (kept apart so the
// rest of the layer builds and tests without the GGUF reader).
#include "gguf/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace kvforge {

VocabData vocab_from_gguf(const gguf::File& f) {
  VocabData v;
  v.model = f.get_string("tokenizer.ggml.model").value_or("");
  if (v.model.empty()) fail("{}: no tokenizer (tokenizer.ggml.model missing)", f.path());
  v.pre = f.get_string("tokenizer.ggml.pre").value_or("default");
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (v.tokens.empty()) fail("{}: tokenizer.ggml.tokens missing or empty", f.path());
  for (double s : f.get_float_array("tokenizer.ggml.scores")) v.scores.push_back(static_cast<float>(s));
  for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) {
    v.token_types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::Undefined);
  }
  v.merges = f.get_string_array("tokenizer.ggml.merges");

  auto id = [&](const char* key) { return static_cast<TokenId>(f.get_int(key).value_or(-1)); };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.eot = id("tokenizer.ggml.eot_token_id");
  v.eom = id("tokenizer.ggml.eom_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");

  // Defaults when the keys are absent follow the model families: SentencePiece
  // and Llama 3 vocabularies start with BOS, other byte-level ones do not.
  const bool llama3 = v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3" || v.pre == "falcon3";
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(v.model == "llama" || llama3);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(v.model == "llama");
  return v;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) { return create(vocab_from_gguf(file)); }

ChatTemplate detect_chat_template(const gguf::File& file) {
  return detect_chat_template(file.get_string("tokenizer.chat_template").value_or(""));
}

ChatFormat detect_chat_format(const gguf::File& file) { return detect_chat_template(file).format; }

}  // namespace kvforge
