#include "eval/table.h"

#include "eval/tally.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "util/error.h"

namespace kvforge {

namespace {
// Display width: count UTF-8 code points (no wide characters in our cells).
size_t width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
std::string pad(const std::string& s, size_t w, Align a) {
  std::string fill(w > width(s) ? w - width(s) : 0, ' ');
  return a == Align::Right ? fill.append(s) : std::string(s).append(fill);
}
}  // namespace

std::string format_markdown_table(const std::vector<std::string>& headers,
                                  const std::vector<std::vector<std::string>>& rows,
                                  const std::vector<Align>& align) {
  const size_t nc = headers.size();
  if (nc == 0) fail("a table needs at least one column");
  if (!align.empty() && align.size() != nc) fail("table: {} alignments for {} columns", align.size(), nc);
  std::vector<size_t> w(nc, 3);
  for (size_t c = 0; c < nc; ++c) w[c] = std::max(w[c], width(headers[c]));
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != nc) fail("table row {} has {} cells, expected {}", r, rows[r].size(), nc);
    for (size_t c = 0; c < nc; ++c) w[c] = std::max(w[c], width(rows[r][c]));
  }
  auto al = [&](size_t c) { return align.empty() ? Align::Left : align[c]; };
  // Built with append only (GCC 12 warns falsely about `" " + std::string`).
  std::string out;
  auto cell = [&](const std::string& text) {
    out.append(" ").append(text).append(" |");
  };
  out += '|';
  for (size_t c = 0; c < nc; ++c) cell(pad(headers[c], w[c], al(c)));
  out += "\n|";
  for (size_t c = 0; c < nc; ++c)
    cell(al(c) == Align::Right ? std::string(w[c] - 1, '-').append(":") : std::string(w[c], '-'));
  out += '\n';
  for (const auto& row : rows) {
    out += '|';
    for (size_t c = 0; c < nc; ++c) cell(pad(row[c], w[c], al(c)));
    out += '\n';
  }
  return out;
}

std::string fmt_bytes(double b) {
  if (std::isnan(b)) return "-";
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (std::fabs(b) >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

std::string fmt_percent(double f) { return std::isnan(f) ? "-" : fmt::format("{:.1f}%", f * 100); }

std::string fmt_fixed(double v, int digits) { return std::isnan(v) ? "-" : fmt::format("{:.{}f}", v, digits); }

std::string Tally::str() const { return fmt::format("{}/{} ({})", correct, total, fmt_percent(accuracy())); }

}  // namespace kvforge
