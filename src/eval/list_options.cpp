#include "eval/list_options.h"

#include <cerrno>
#include <cstdlib>

#include "util/error.h"

namespace kvforge {

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) fail("empty item in list '{}'", s);
    out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::vector<int32_t> parse_int_list(const std::string& s, const char* what, int32_t min_value) {
  std::vector<int32_t> out;
  for (const auto& item : split_list(s)) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v < min_value || v > INT32_MAX)
      fail("{}: '{}' is not an integer >= {}", what, item, min_value);
    out.push_back((int32_t)v);
  }
  return out;
}

std::vector<double> parse_fraction_list(const std::string& s, const char* what) {
  std::vector<double> out;
  for (const auto& item : split_list(s)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (*end != '\0' || !(v >= 0 && v <= 1)) fail("{}: '{}' is not a number in [0, 1]", what, item);
    out.push_back(v);
  }
  return out;
}

}  // namespace kvforge
