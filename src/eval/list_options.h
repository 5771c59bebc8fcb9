#pragma once
// Comma-separated list flags ("512,2048", "0.1,0.5,0.9", "full;q8").
#include <cstdint>
#include <string>
#include <vector>

namespace kvforge {

std::vector<std::string> split_list(const std::string& s, char sep = ',');  // empty items are errors
std::vector<int32_t> parse_int_list(const std::string& s, const char* what, int32_t min_value);
std::vector<double> parse_fraction_list(const std::string& s, const char* what);  // each in [0, 1]

}  // namespace kvforge
