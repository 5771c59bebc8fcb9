#pragma once
// Shared machinery of the vocabulary-driven tokenizers: text -> id lookup,
// special-token splitting, decoding and end-of-generation detection. The
// subclasses only say how a run of plain text becomes ids and how a normal
// token's text becomes bytes.
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace kvforge {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

// The byte value of a "<0xAB>" token text, -1 for other texts.
int parse_byte_token(std::string_view text);

class TokenizerBase : public Tokenizer {
 public:
  explicit TokenizerBase(VocabData data);

  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(TokenId id) const override;
  std::string decode(const std::vector<TokenId>& ids, bool keep_special) const override;
  int32_t n_vocab() const override { return static_cast<int32_t>(data_.tokens.size()); }
  const VocabData& vocab() const override { return data_; }
  TokenType token_type(TokenId id) const override;
  bool is_end_of_generation(TokenId id) const override { return eog_.count(id) != 0; }
  TokenId find_token(std::string_view text) const override;

 protected:
  // Appends the ids of a run of text that holds no special token.
  // `after_special`: the run starts the text or follows a special token.
  virtual void encode_text(std::string_view text, bool after_special, std::vector<TokenId>& out) const = 0;
  // Bytes of a Normal token.
  virtual void append_normal_piece(TokenId id, std::string& out) const = 0;
  // SentencePiece strips the space its encoder put in front of the text.
  virtual bool strips_leading_space() const { return false; }

  void check_id(TokenId id) const;

  VocabData data_;
  TokenMap by_text_;
  std::vector<SpecialToken> specials_;  // longest first
  std::unordered_set<TokenId> eog_;
};

}  // namespace kvforge
