#pragma once
// Markdown tables (GitHub flavour) with padded columns: readable on a
// terminal and rendered by any Markdown viewer.
#include <string>
#include <vector>

namespace kvforge {

enum class Align { Left, Right };

// Every row must have headers.size() cells (throws kvforge::Error if not).
// align may be empty (all left) or one entry per column.
std::string format_markdown_table(const std::vector<std::string>& headers,
                                  const std::vector<std::vector<std::string>>& rows,
                                  const std::vector<Align>& align = {});

// Number formatting shared by the eval commands.
std::string fmt_bytes(double bytes);          // "23.04 KB", "188.7 MB" (decimal units)
std::string fmt_percent(double fraction);     // "87.5%"
std::string fmt_fixed(double v, int digits);  // "12.35"; "-" for NaN

}  // namespace kvforge
