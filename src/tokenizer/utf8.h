#pragma once
// Minimal UTF-8 helpers shared by the tokenizers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvforge::utf8 {

// Length of the sequence introduced by lead byte `c` (1 for stray/invalid bytes).
inline size_t seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not
// one (overlong forms, surrogates and values past U+10FFFF are invalid).
size_t valid_seq_len(std::string_view s, size_t i);

bool is_valid(std::string_view s);

void append(std::string& out, uint32_t cp);

}  // namespace kvforge::utf8
