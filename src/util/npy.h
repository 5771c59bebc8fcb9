#pragma once
// Writes NumPy .npy files (version 1.0, little-endian float32, C order).
#include <cstdint>
#include <string>
#include <vector>

namespace kvforge {

// Throws kvforge::Error if the file cannot be written.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace kvforge
