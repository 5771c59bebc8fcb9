#include "tokenizer/special_tokens.h"

namespace kvforge {

std::vector<TextFragment> split_special_tokens(std::string_view text, const std::vector<SpecialToken>& specials,
                                               bool parse_special) {
  std::vector<TextFragment> frags;
  if (!text.empty()) frags.push_back({text, -1});
  std::vector<TextFragment> next;
  for (const SpecialToken& sp : specials) {
    if (!(parse_special || sp.always) || sp.text.empty()) continue;
    if (text.find(sp.text) == std::string_view::npos) continue;  // cheap filter for big vocabularies
    next.clear();
    for (const TextFragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t at; (at = rest.find(sp.text)) != std::string_view::npos;) {
        if (at > 0) next.push_back({rest.substr(0, at), -1});
        next.push_back({{}, sp.id});
        rest.remove_prefix(at + sp.text.size());
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace kvforge
