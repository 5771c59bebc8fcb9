#include "tokenizer/byte_unicode.h"

#include <array>
#include <unordered_map>

#include "tokenizer/utf8.h"

namespace kvforge::byte_unicode {
namespace {

struct Tables {
  std::array<std::string, 256> to_text;
  std::unordered_map<uint32_t, uint8_t> to_byte;
  Tables() {
    auto printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : next++;
      utf8::append(to_text[b], cp);
      to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& encode_byte(uint8_t b) { return tables().to_text[b]; }

void encode(std::string_view raw, std::string& out) {
  const auto& t = tables();
  for (unsigned char c : raw) out += t.to_text[c];
}

bool decode(std::string_view mapped, std::string& out) {
  const auto& t = tables();
  for (size_t i = 0; i < mapped.size();) {
    size_t n = utf8::valid_seq_len(mapped, i);
    if (n == 0 || n > 2) return false;  // the alphabet lies below U+0800
    uint32_t cp = n == 1 ? static_cast<unsigned char>(mapped[i])
                         : ((mapped[i] & 0x1F) << 6) | (mapped[i + 1] & 0x3F);
    auto it = t.to_byte.find(cp);
    if (it == t.to_byte.end()) return false;
    out += static_cast<char>(it->second);
    i += n;
  }
  return true;
}

}  // namespace kvforge::byte_unicode
