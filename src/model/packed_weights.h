#pragma once
// Load-time repacking of weight matrices into the interleaved layouts the
// kernels read fastest (ops/weight_pack.h). The packed copies live here; the
// pages of the mapped file they came from are released afterwards, so the
// weights stay resident once, not twice.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/weights.h"

namespace kvforge {

class PackedWeights {
 public:
  PackedWeights() = default;
  ~PackedWeights();
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;

  // Repacks every matrix of w worth packing (ops/matmul.h) and points w's views at the copies
  // (matrices that alias, such as tied embeddings, stay aliased).
  void pack(ModelWeights& w);
  size_t bytes() const;

 private:
  struct Buffer {
    void* p;
    size_t n;
  };
  std::vector<Buffer> buffers_;
};

}  // namespace kvforge
