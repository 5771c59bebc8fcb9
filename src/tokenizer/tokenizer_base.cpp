#include "tokenizer/tokenizer_base.h"

#include <algorithm>

#include "util/error.h"

namespace kvforge {

namespace {
// Turn-end markers of common chat formats. Many GGUFs name only the base
// model's end-of-text token as EOS while their chat template ends turns with
// another marker (Llama 3 Instruct converted with eos=<|end_of_text|> ends
// turns with <|eot_id|>; ChatML models end them with <|im_end|>). A model
// that emits one of these control tokens has finished its turn, so we stop
// there too. Only Control tokens count: a normal token with this text is
// ordinary output.
constexpr const char* kEndMarkers[] = {"<|im_end|>",    "<|eot_id|>", "<|eom_id|>",     "<|end_of_text|>",
                                       "<|endoftext|>", "<|end|>",    "<end_of_turn>"};
}  // namespace

TokenizerBase::TokenizerBase(VocabData data) : data_(std::move(data)) {
  const size_t n = data_.tokens.size();
  if (n == 0) fail("tokenizer: empty vocabulary");
  if (!data_.token_types.empty() && data_.token_types.size() != n)
    fail("tokenizer: {} token types for {} tokens", data_.token_types.size(), n);
  if (!data_.scores.empty() && data_.scores.size() != n)
    fail("tokenizer: {} scores for {} tokens", data_.scores.size(), n);
  for (TokenId* id : {&data_.bos, &data_.eos, &data_.eot, &data_.eom, &data_.unk, &data_.pad})
    if (*id >= static_cast<TokenId>(n)) *id = -1;  // out-of-range ids in metadata mean "none"

  by_text_.reserve(n);
  for (size_t i = 0; i < n; ++i) by_text_[data_.tokens[i]] = static_cast<TokenId>(i);  // later duplicates win

  for (size_t i = 0; i < n; ++i) {
    TokenType t = token_type(static_cast<TokenId>(i));
    if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown)
      specials_.push_back({data_.tokens[i], static_cast<TokenId>(i), t == TokenType::UserDefined});
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const SpecialToken& a, const SpecialToken& b) { return a.text.size() > b.text.size(); });

  for (TokenId id : {data_.eos, data_.eot, data_.eom})
    if (id >= 0) eog_.insert(id);
  for (const char* marker : kEndMarkers) {
    TokenId id = find_token(marker);
    if (id >= 0 && token_type(id) == TokenType::Control) eog_.insert(id);
  }
}

TokenType TokenizerBase::token_type(TokenId id) const {
  check_id(id);
  return data_.token_types.empty() ? TokenType::Normal : data_.token_types[id];
}

TokenId TokenizerBase::find_token(std::string_view text) const {
  auto it = by_text_.find(text);
  return it == by_text_.end() ? -1 : it->second;
}

int parse_byte_token(std::string_view t) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void TokenizerBase::check_id(TokenId id) const {
  if (id < 0 || id >= n_vocab()) fail("token id {} out of range [0, {})", id, n_vocab());
}

std::vector<TokenId> TokenizerBase::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<TokenId> out;
  if (add_bos && data_.add_bos && data_.bos >= 0) out.push_back(data_.bos);
  bool after_special = true;
  for (const TextFragment& f : split_special_tokens(text, specials_, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_text(f.text, after_special, out);
      after_special = false;
    }
  }
  return out;
}

std::string TokenizerBase::token_to_piece(TokenId id) const {
  std::string out;
  switch (token_type(id)) {
    case TokenType::Control:
    case TokenType::UserDefined:
    case TokenType::Unknown:
      return data_.tokens[id];
    case TokenType::Byte: {
      // "<0xAB>" stands for the raw byte 0xAB.
      int b = parse_byte_token(data_.tokens[id]);
      return b >= 0 ? std::string(1, static_cast<char>(b)) : data_.tokens[id];
    }
    default:
      append_normal_piece(id, out);
      return out;
  }
}

std::string TokenizerBase::decode(const std::vector<TokenId>& ids, bool keep_special) const {
  std::string out;
  bool first = true;
  for (TokenId id : ids) {
    TokenType t = token_type(id);
    if (t == TokenType::Control && !keep_special) continue;
    std::string piece = token_to_piece(id);
    if (first && strips_leading_space() && t != TokenType::Control && !piece.empty() && piece[0] == ' ')
      piece.erase(0, 1);
    if (t != TokenType::Control) first = false;
    out += piece;
  }
  return out;
}

}  // namespace kvforge
