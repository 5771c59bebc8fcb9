// libFuzzer target for the GGUF reader: any byte string must either parse or
// raise kvforge::Error — never crash, hang or read out of bounds. A parsed
// file is consumed fully (metadata and every tensor row dequantized) so that
// sanitizers check the pointers the reader hands out.
// Build: cmake -DKVFORGE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ ...; run
// ./fuzz_gguf -max_len=65536 corpus/
#include <cstddef>
#include <cstdint>
#include <vector>

#include "gguf/gguf.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = kvforge::gguf::File::from_memory(data, size);
    for (const auto& t : f->tensors()) {
      const int64_t ne0 = t.ne[0];
      const int64_t rows = t.n_elements() / ne0;
      const size_t rb = kvforge::row_bytes(t.type, ne0);
      std::vector<float> row((size_t)ne0);
      for (int64_t r = 0; r < rows; ++r) kvforge::dequantize_row(t.type, t.data + r * rb, row.data(), ne0);
    }
  } catch (const kvforge::Error&) {
  }
  return 0;
}
