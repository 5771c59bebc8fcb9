#pragma once
// Tokenizers described by GGUF metadata (tokenizer.ggml.*):
//  - "gpt2": byte-level BPE; text is first split by the pre-tokenizer regexes
//    named by tokenizer.ggml.pre (smollm, gpt2, llama-bpe, qwen2, ...).
//  - "llama": SentencePiece-style BPE over scores, with byte fallback.
// Special (control / user-defined) tokens are matched in the text before
// pre-tokenization when parse_special is true.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvforge {

namespace gguf { class File; }

using TokenId = int32_t;

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Everything a tokenizer is built from; from_gguf fills it from metadata,
// tests fill it by hand.
struct VocabData {
  std::string model = "gpt2";   // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre = "default";  // tokenizer.ggml.pre (gpt2 only; see pretokenizer.h for names)
  std::vector<std::string> tokens;
  std::vector<float> scores;           // may be empty for gpt2
  std::vector<TokenType> token_types;  // may be empty: all Normal
  std::vector<std::string> merges;     // "left right", rank = index (gpt2)
  TokenId bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, pad = -1;
  bool add_bos = false;                // tokenizer.ggml.add_bos_token
  bool add_space_prefix = true;        // llama: tokenizer.ggml.add_space_prefix
};

// VocabData from a GGUF's tokenizer.ggml.* keys (absent add_bos_token /
// add_space_prefix default per model family, as in llama.cpp).
VocabData vocab_from_gguf(const gguf::File& file);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Throws kvforge::Error for an unknown model ("gpt2", "llama") or
  // pre-tokenizer name, or inconsistent data.
  static std::unique_ptr<Tokenizer> create(VocabData data);
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);

  // add_bos: prepend BOS if the vocabulary asks for it (add_bos_token).
  // parse_special: Control/Unknown token texts in `text` become those tokens
  // (longest first). UserDefined tokens are always matched, as in llama.cpp
  // and HF tokenizers. Thread-safe; cost is about linear in the text.
  // Invalid UTF-8 is accepted: stray bytes are encoded as bytes (byte-level
  // BPE) or byte-fallback tokens (SentencePiece).
  virtual std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;
  // Raw bytes of one token (may be an incomplete UTF-8 sequence). Control,
  // UserDefined and Unknown tokens give their text; "<0xAB>" byte tokens the
  // byte; SentencePiece tokens have U+2581 turned back into spaces (the
  // leading space the encoder added is kept: streaming callers drop it).
  virtual std::string token_to_piece(TokenId id) const = 0;
  // Concatenated pieces; Control tokens (BOS/EOS...) decode to "" unless
  // keep_special. `ids` are taken as a whole text: for SentencePiece with
  // add_space_prefix the first piece's leading space is dropped, so that
  // decode(encode(s)) == s for any valid UTF-8 s without special tokens
  // (and, for byte-level BPE, without bytes the vocabulary has no token for:
  // encode drops those, as llama.cpp and HF tokenizers do).
  virtual std::string decode(const std::vector<TokenId>& ids, bool keep_special = false) const = 0;

  virtual int32_t n_vocab() const = 0;
  virtual const VocabData& vocab() const = 0;
  // Type of a token (Normal when the vocabulary has no types). Throws for
  // ids outside [0, n_vocab).
  virtual TokenType token_type(TokenId id) const = 0;
  // Ends generation: EOS, EOT, EOM, and the Control tokens <|im_end|>,
  // <|eot_id|>, <|eom_id|>, <|end_of_text|>, <|endoftext|>, <|end|>,
  // <end_of_turn> when the vocabulary has them (see tokenizer_base.cpp).
  virtual bool is_end_of_generation(TokenId id) const = 0;
  // Finds a token by its exact text (for chat-template markers); -1 if none.
  virtual TokenId find_token(std::string_view text) const = 0;
};

}  // namespace kvforge
