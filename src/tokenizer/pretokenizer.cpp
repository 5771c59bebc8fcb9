#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace kvforge {
namespace {

// The regexes as published with the tokenizers (HF tokenizer.json); the
// case-insensitive contraction group (?i:...) is spelled out because the
// reference implementations (llama.cpp) match it that way.
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kDigit = R"(\p{N})";

struct Preset {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
};

const std::map<std::string, Preset>& presets() {
  static const std::map<std::string, Preset> m = [] {
    std::map<std::string, Preset> p;
    // Digits one by one, then GPT-2 (SmolLM, StarCoder and friends).
    for (const char* n : {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})
      p[n] = {{kDigit, kGpt2}};
    for (const char* n : {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion"}) p[n] = {{kGpt2}};
    for (const char* n : {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"}) p[n] = {{kLlama3}, true};
    for (const char* n : {"dbrx", "smaug-bpe"}) p[n] = {{kLlama3}};
    for (const char* n : {"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez"}) p[n] = {{kQwen2}};
    // "default" (and a missing key): GPT-2 with punctuation runs and number
    // groups split first, as llama.cpp does for unnamed BPE vocabularies.
    p["default"] = {{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
    return p;
  }();
  return m;
}

// Unicode White_Space, the set the reference tokenizers mean by \s (PCRE2's
// UCP \s leaves out U+0085).
constexpr const char* kWhiteSpace =
    R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string expand_whitespace_classes(const std::string& re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      char n = re[++i];
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (c == '[') in_class = true;
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  explicit Regex(const std::string& pattern) {
    std::string expanded = expand_whitespace_classes(pattern);
    int err = 0;
    PCRE2_SIZE off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(), PCRE2_UTF | PCRE2_UCP,
                         &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("bad pre-tokenizer regex '{}' at {}: {}", pattern, off, reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; interpreter otherwise
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
};

PreTokenizer PreTokenizer::from_regexes(const std::vector<std::string>& regexes) {
  PreTokenizer p;
  for (const auto& r : regexes) p.regexes_.push_back(std::make_shared<const Regex>(r));
  return p;
}

PreTokenizer PreTokenizer::for_name(const std::string& pre) {
  auto it = presets().find(pre.empty() ? "default" : pre);
  if (it == presets().end())
    fail("unsupported tokenizer.ggml.pre '{}' (supported: {})", pre, supported_names());
  PreTokenizer p = from_regexes(it->second.regexes);
  p.ignore_merges_ = it->second.ignore_merges;
  return p;
}

std::string PreTokenizer::supported_names() {
  std::string s;
  for (const auto& [name, _] : presets()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  // Valid UTF-8 runs go through the regexes; stray bytes stand alone.
  for (size_t i = 0; i < text.size();) {
    size_t j = i;
    while (j < text.size() && utf8::valid_seq_len(text, j) != 0) j += utf8::valid_seq_len(text, j);
    if (j > i) pieces.push_back(text.substr(i, j - i));
    if (j < text.size()) pieces.push_back(text.substr(j++, 1));
    i = j;
  }
  if (regexes_.empty()) return pieces;

  pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
  std::vector<std::string_view> next;
  for (const auto& re : regexes_) {
    next.clear();
    for (std::string_view piece : pieces) {
      if (piece.size() == 1 && static_cast<unsigned char>(piece[0]) >= 0x80) {  // stray byte
        next.push_back(piece);
        continue;
      }
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0, emitted = 0;
      while (pos < piece.size()) {
        int rc = pcre2_match(re->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc < 0) break;  // no further match (or a matching limit): the rest is a gap
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (s > emitted) next.push_back(piece.substr(emitted, s - emitted));
        if (e > s) {
          next.push_back(piece.substr(s, e - s));
          emitted = pos = e;
        } else {  // empty match: step over one character
          emitted = s;
          pos = s + utf8::seq_len(static_cast<unsigned char>(piece[s]));
        }
      }
      if (emitted < piece.size()) next.push_back(piece.substr(emitted));
    }
    pieces.swap(next);
  }
  pcre2_match_data_free(md);
  return pieces;
}

}  // namespace kvforge
