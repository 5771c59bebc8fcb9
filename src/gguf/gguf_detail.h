#pragma once
// Helpers shared by the GGUF reader and writer; not part of the public API.
#include <string>

namespace kvforge::gguf::detail {

// Quotes a name from a file for an error message: non-printable bytes become
// \xNN (so a message stays one line) and very long names are cut.
inline std::string quote(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 80) {
      out += "...";
      break;
    }
    const unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f || ch == '\\' || ch == '\'') {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += (char)ch;
    }
  }
  return out + "'";
}

}  // namespace kvforge::gguf::detail
