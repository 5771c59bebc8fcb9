// libFuzzer target for the tokenizer of the default model (byte-level BPE
// with PCRE2 pre-tokenizer regexes): any byte string must encode to ids
// inside the vocabulary, with and without special-token parsing, and for
// valid UTF-8 decode back to itself (the contract in tokenizer.h; bytes the
// vocabulary has no token for are dropped, as llama.cpp and HF do). The model
// file comes from `kvforge pull` / scripts/setup.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/model_store.h"

namespace {
std::unique_ptr<kvforge::gguf::File> file;  // kept open: the vocabulary comes from it
std::unique_ptr<kvforge::Tokenizer> tok;
bool byte_has_token[256];  // a vocabulary may lack a few bytes (SmolLM2: 0x06); they are dropped
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    file = kvforge::gguf::File::open(kvforge::default_model_path());
    tok = kvforge::Tokenizer::from_gguf(*file);
    for (int b = 0; b < 256; ++b) byte_has_token[b] = !tok->encode(std::string(1, (char)b), false, false).empty();
  } catch (const kvforge::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot load the default model's tokenizer: %s\n", e.what());
    std::exit(1);
  }
  return 0;
}

bool all_bytes_have_tokens(std::string_view s) {
  for (char c : s)
    if (!byte_has_token[(uint8_t)c]) return false;
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text((const char*)data, size);
  for (bool special : {false, true}) {
    const auto ids = tok->encode(text, /*add_bos=*/special, special);
    for (auto id : ids)
      if (id < 0 || id >= tok->n_vocab()) __builtin_trap();  // an id outside the vocabulary
    if (!special && kvforge::utf8::is_valid(text) && all_bytes_have_tokens(text) && tok->decode(ids) != text)
      __builtin_trap();  // lost text
  }
  return 0;
}
