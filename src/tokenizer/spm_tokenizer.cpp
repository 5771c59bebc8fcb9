// SentencePiece-style BPE ("llama" vocabularies: Llama 2, Mistral): spaces
// become U+2581, then adjacent pieces are merged greedily, highest-scoring
// resulting token first; characters that no token covers fall back to
// <0xXX> byte tokens (or unk).
#include <array>
#include <queue>

#include "tokenizer/tokenizer_base.h"
#include "tokenizer/utf8.h"

namespace kvforge {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class SpmTokenizer final : public TokenizerBase {
 public:
  explicit SpmTokenizer(VocabData data) : TokenizerBase(std::move(data)) {
    byte_token_.fill(-1);
    for (size_t i = 0; i < data_.tokens.size(); ++i)
      if (token_type(static_cast<TokenId>(i)) == TokenType::Byte)
        if (int b = parse_byte_token(data_.tokens[i]); b >= 0 && byte_token_[b] < 0) byte_token_[b] = static_cast<TokenId>(i);
  }

 protected:
  void encode_text(std::string_view text, bool after_special, std::vector<TokenId>& out) const override {
    // Like llama.cpp, the dummy prefix goes before the text and before every
    // run of text that follows a special token.
    std::string s;
    s.reserve(text.size() + 8);
    if (data_.add_space_prefix && after_special) s += kSpaceMark;
    for (char c : text) {
      if (c == ' ') s += kSpaceMark;
      else s += c;
    }

    struct Symbol {
      size_t start, len;
      int prev, next;
    };
    struct Candidate {
      float score;
      int left, right;
      size_t len;
      bool operator<(const Candidate& o) const {  // max-heap: best score, then leftmost
        return score != o.score ? score < o.score : left > o.left;
      }
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < s.size();) {
      size_t n = utf8::valid_seq_len(s, i);
      if (n == 0) n = 1;  // a stray byte is a symbol of its own (it will become a byte token)
      sym.push_back({i, n, static_cast<int>(sym.size()) - 1, -1});
      if (sym.size() > 1) sym[sym.size() - 2].next = static_cast<int>(sym.size()) - 1;
      i += n;
    }
    std::priority_queue<Candidate> heap;
    auto consider = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      size_t len = sym[l].len + sym[r].len;
      TokenId id = find_token(std::string_view(s).substr(sym[l].start, len));
      if (id < 0) return;
      heap.push({data_.scores.empty() ? 0.0f : data_.scores[id], l, r, len});
    };
    for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) consider(i, i + 1);

    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      Symbol& l = sym[c.left];
      Symbol& r = sym[c.right];
      if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = c.left;
      consider(l.prev, c.left);
      consider(c.left, l.next);
    }

    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
      std::string_view piece = std::string_view(s).substr(sym[i].start, sym[i].len);
      if (TokenId id = find_token(piece); id >= 0) {
        out.push_back(id);
        continue;
      }
      // Only single characters end up here: their bytes, or one unk.
      bool have_bytes = true;
      for (unsigned char b : piece) have_bytes = have_bytes && byte_token_[b] >= 0;
      if (have_bytes) {
        for (unsigned char b : piece) out.push_back(byte_token_[b]);
      } else if (data_.unk >= 0) {
        out.push_back(data_.unk);
      }
    }
  }

  void append_normal_piece(TokenId id, std::string& out) const override {
    std::string_view t = data_.tokens[id];
    for (size_t at; (at = t.find(kSpaceMark)) != std::string_view::npos;) {
      out += t.substr(0, at);
      out += ' ';
      t.remove_prefix(at + kSpaceMark.size());
    }
    out += t;
  }

  bool strips_leading_space() const override { return data_.add_space_prefix; }

 private:
  std::array<TokenId, 256> byte_token_{};
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(VocabData data) { return std::make_unique<SpmTokenizer>(std::move(data)); }

}  // namespace kvforge
