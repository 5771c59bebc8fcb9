#pragma once
// Cuts text at occurrences of special tokens before any other processing.
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvforge {

struct TextFragment {
  std::string_view text;  // raw text when token < 0
  TokenId token = -1;     // a special token matched in the text
};

struct SpecialToken {
  std::string text;
  TokenId id;
  bool always;  // user-defined tokens are matched even without parse_special
};

// `specials` must be sorted longest first. Like llama.cpp, each special token
// in turn (longest first) splits every remaining raw fragment, so where two
// specials overlap the longer one wins. Raw fragments are never empty.
std::vector<TextFragment> split_special_tokens(std::string_view text, const std::vector<SpecialToken>& specials,
                                               bool parse_special);

}  // namespace kvforge
