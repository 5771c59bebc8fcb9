#include "model/utf8_sanitize.h"

#include <cstdint>

namespace kvforge::utf8 {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Well-formed sequences (Unicode table 3-7): the lead byte fixes the length
// and the allowed range of the second byte (this rules out overlongs,
// surrogates and code points above U+10FFFF); later bytes are 80..BF.
struct Lead {
  int len;  // 0 = cannot start a sequence
  uint8_t lo, hi;
};

Lead lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

bool continuation_ok(const Lead& lead, size_t index, uint8_t b) {
  return index == 1 ? (b >= lead.lo && b <= lead.hi) : (b >= 0x80 && b <= 0xBF);
}

// Number of bytes from s[i] that follow the well-formed pattern (>= 1 when
// the lead is valid), capped at the sequence length.
size_t matched(std::string_view s, size_t i, const Lead& lead) {
  size_t j = 1;
  while (j < static_cast<size_t>(lead.len) && i + j < s.size() &&
         continuation_ok(lead, j, static_cast<uint8_t>(s[i + j])))
    ++j;
  return j;
}

}  // namespace

size_t incomplete_suffix(std::string_view s) {
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const size_t i = s.size() - k;
    const Lead lead = lead_info(static_cast<uint8_t>(s[i]));
    if (lead.len > static_cast<int>(k) && matched(s, i, lead) == k) return k;
  }
  return 0;
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const Lead lead = lead_info(static_cast<uint8_t>(s[i]));
    if (lead.len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    const size_t m = matched(s, i, lead);
    if (m == static_cast<size_t>(lead.len)) {
      out.append(s.substr(i, m));
    } else {
      out += kReplacement;  // the maximal subpart s[i, i+m) becomes one U+FFFD
    }
    i += m;
  }
  return out;
}

}  // namespace kvforge::utf8
