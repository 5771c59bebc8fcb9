#pragma once
// Test helper: a KvView over one head's K/V rows stored back to back in a
// buffer, cut into one segment or two (rows [0, n_first) and the n_second
// after them), as a window cache's view would be.
#include <cstdint>
#include <numeric>

#include "ops/hadamard.h"
#include "ops/kv_view.h"

namespace kvforge::test {

inline KvView rows_view(KvStorage st, int dk, int dv, const uint8_t* k, const uint8_t* v, int n_first, int n_second,
                        bool hadamard = false) {
  KvView w;
  w.storage = st;
  w.hadamard_block = hadamard ? hadamard_block(std::gcd(dk, dv)) : 0;
  w.head_dim_k = dk;
  w.head_dim_v = dv;
  w.k_stride = kv_row_bytes(st, dk);
  w.v_stride = kv_row_bytes(st, dv);
  w.segments[0] = {k, v, n_first};
  w.n_segments = 1;
  if (n_second > 0) {
    w.segments[1] = {k + (size_t)n_first * w.k_stride, v + (size_t)n_first * w.v_stride, n_second};
    w.n_segments = 2;
  }
  return w;
}

}  // namespace kvforge::test
