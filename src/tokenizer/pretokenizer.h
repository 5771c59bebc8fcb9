#pragma once
// Pre-tokenization for byte-level BPE: the text is cut into words by a
// sequence of regexes chosen by tokenizer.ggml.pre. Each regex is applied to
// every piece produced by the previous one; both its matches and the text
// between matches become pieces (so nothing is ever dropped), and a piece's
// edges are the edges of the subject (look-arounds never see past them).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvforge {

class PreTokenizer {
 public:
  // Throws kvforge::Error for a pre-tokenizer name we do not know.
  static PreTokenizer for_name(const std::string& pre);
  // Custom regex sequence (Perl syntax; \s/\S mean Unicode White_Space).
  static PreTokenizer from_regexes(const std::vector<std::string>& regexes);

  // Pieces in order; they concatenate to `text`. Invalid UTF-8 bytes become
  // one-byte pieces of their own.
  std::vector<std::string_view> split(std::string_view text) const;

  // Llama 3 style vocabularies: a word that is itself a token is emitted
  // whole, without running the merges.
  bool ignore_merges() const { return ignore_merges_; }

  // Names accepted by for_name, for error messages and docs.
  static std::string supported_names();

 private:
  struct Regex;
  std::vector<std::shared_ptr<const Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace kvforge
