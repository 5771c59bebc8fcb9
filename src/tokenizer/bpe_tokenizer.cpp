// Byte-level BPE ("gpt2" vocabularies): pre-tokenize, map each word's bytes
// to the GPT-2 byte alphabet, then apply merges lowest rank first.
#include <array>
#include <queue>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_base.h"
#include "util/error.h"

namespace kvforge {
namespace {

class BpeTokenizer final : public TokenizerBase {
 public:
  explicit BpeTokenizer(VocabData data) : TokenizerBase(std::move(data)), pre_(PreTokenizer::for_name(data_.pre)) {
    for (int b = 0; b < 256; ++b) byte_token_[b] = find_token(byte_unicode::encode_byte(static_cast<uint8_t>(b)));
    merges_.reserve(data_.merges.size());
    for (size_t rank = 0; rank < data_.merges.size(); ++rank) {
      const std::string& m = data_.merges[rank];
      size_t sp = m.find(' ', 1);  // from 1: the left part may itself be a space
      if (sp == std::string::npos) fail("tokenizer: bad merge '{}' (rank {})", m, rank);
      TokenId l = find_token(std::string_view(m).substr(0, sp));
      TokenId r = find_token(std::string_view(m).substr(sp + 1));
      TokenId merged = find_token(m.substr(0, sp) + m.substr(sp + 1));
      if (l < 0 || r < 0 || merged < 0) continue;  // refers to text outside the vocabulary: can never apply
      merges_.try_emplace(pair_key(l, r), Merge{static_cast<int32_t>(rank), merged});  // first rank wins
    }
  }

 protected:
  void encode_text(std::string_view text, bool, std::vector<TokenId>& out) const override {
    // Natural text repeats words a lot: memoize them for this call (a
    // per-call cache keeps encode() const and thread-safe).
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> memo;
    std::vector<TokenId> memo_ids;
    for (std::string_view word : pre_.split(text)) {
      auto it = memo.find(word);
      if (it == memo.end()) {
        size_t begin = memo_ids.size();
        encode_word(word, memo_ids);
        it = memo.emplace(word, std::make_pair(begin, memo_ids.size())).first;
      }
      out.insert(out.end(), memo_ids.begin() + it->second.first, memo_ids.begin() + it->second.second);
    }
  }

  void append_normal_piece(TokenId id, std::string& out) const override {
    const std::string& t = data_.tokens[id];
    std::string bytes;
    // A token outside the byte alphabet (rare, hand-made vocabularies) is its own text.
    out += byte_unicode::decode(t, bytes) ? bytes : t;
  }

 private:
  struct Merge {
    int32_t rank;
    TokenId result;
  };
  static uint64_t pair_key(TokenId l, TokenId r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }

  void encode_word(std::string_view word, std::vector<TokenId>& out) const {
    if (pre_.ignore_merges()) {
      std::string mapped;
      byte_unicode::encode(word, mapped);
      if (TokenId id = find_token(mapped); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    // One symbol per byte, linked in a list; a heap of candidate merges
    // ordered by (rank, position). Stale candidates are skipped when popped.
    struct Symbol {
      TokenId id;
      int prev, next;
    };
    struct Candidate {
      int32_t rank;
      int left, right;
      TokenId left_id, right_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    const int n = static_cast<int>(word.size());
    std::vector<Symbol> sym(n);
    for (int i = 0; i < n; ++i) sym[i] = {byte_token_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    auto consider = [&](int l, int r) {
      if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
      auto it = merges_.find(pair_key(sym[l].id, sym[r].id));
      if (it != merges_.end()) heap.push({it->second.rank, l, r, sym[l].id, sym[r].id});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);

    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      Symbol& l = sym[c.left];
      Symbol& r = sym[c.right];
      if (l.id != c.left_id || r.id != c.right_id || l.next != c.right) continue;  // stale
      l.id = merges_.at(pair_key(c.left_id, c.right_id)).result;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = c.left;
      r.id = -2;  // dead
      consider(l.prev, c.left);
      consider(c.left, l.next);
    }
    for (int i = 0; i >= 0 && i < n; i = sym[i].next) {
      // A byte missing from the vocabulary (SmolLM2 has no token for 0x06)
      // is dropped, as llama.cpp and HF tokenizers do, not turned into the
      // unknown token (which can be <|endoftext|>).
      if (sym[i].id >= 0) out.push_back(sym[i].id);
    }
  }

  PreTokenizer pre_;
  std::array<TokenId, 256> byte_token_{};
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(VocabData data) { return std::make_unique<BpeTokenizer>(std::move(data)); }

}  // namespace kvforge
