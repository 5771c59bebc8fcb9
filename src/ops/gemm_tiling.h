#pragma once
// The loops that cut a GemmFn's (rows x tokens) range into tiles, shared by
// the kernels of every SIMD level (matmul_avx2.cpp, matmul_avx512.cpp and
// their x8-packed variants). The tiles themselves hold the intrinsics; these
// loops are plain C++, instantiated in each kernel file with that file's own
// (internal) tile types, so no code compiled for one ISA is shared with
// another.
#include <cstddef>
#include <cstdint>

#include "ops/matmul.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::tiling {

// A single-token (decode) tile reads every weight once, straight from
// memory, in one contiguous stream per matrix. The hardware prefetchers
// alone left a third of one core's read bandwidth unused there (they
// restart at every 4 KiB boundary, and the tile's arithmetic sits between
// the loads); so such tiles also prefetch the stream kStreamAhead bytes
// ahead of the block they work on: about the bytes that arrive during one
// memory latency at full speed.
constexpr size_t kStreamAhead = 2048;

// Per block of kBlockBytes in a contiguous stream, from p (the block's
// start): its lines kStreamAhead bytes ahead. Consecutive prefetches lie at
// most 64 bytes apart over the stream, so none of its lines is skipped.
template <size_t kBlockBytes>
inline void prefetch_stream(const void* p) {
  for (size_t l = 0; l < (kBlockBytes + 63) / 64; ++l) __builtin_prefetch((const char*)p + kStreamAhead + 64 * l, 0, 3);
}

// Plain layouts: tiles of kR rows x kT tokens, then single tokens, then a
// remainder of 1..kR-1 rows. Tile<WT, R, T>::run(W, r, xa, xs, t, y).
template <int kR, int kT, template <class, int, int> class Tile, class WT>
struct Tiler {
  template <int R>
  static void rows_tile(const WeightMatrix& W, int64_t r, const uint8_t* xa, size_t xs, int64_t t0, int64_t t1,
                        float* y) {
    int64_t t = t0;
    for (; t + kT <= t1; t += kT) Tile<WT, R, kT>::run(W, r, xa, xs, t, y);
    for (; t < t1; ++t) Tile<WT, R, 1>::run(W, r, xa, xs, t, y);
  }
  static void gemm(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y) {
    static_assert(kR == 4, "row remainder switch assumes kR == 4");
    int64_t r = r0;
    for (; r + kR <= r1; r += kR) rows_tile<kR>(W, r, xa, xs, t0, t1, y);
    switch (r1 - r) {
      case 3: rows_tile<3>(W, r, xa, xs, t0, t1, y); break;
      case 2: rows_tile<2>(W, r, xa, xs, t0, t1, y); break;
      case 1: rows_tile<1>(W, r, xa, xs, t0, t1, y); break;
      default: break;
    }
  }
};

// x8-interleaved layouts (ops/weight_pack.h): per group of kPackRows rows,
// tiles of kT tokens, then (kT > 4) one of 4, then single tokens. kElems:
// elements per block (QK, or QK_K for the K-quants).
// Tile<T>::run(blocks, nb, xa, xs, t, rows, r, y).
template <int kT, class Block, template <int> class Tile, int kElems = QK>
void gemm_x8(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
             float* y) {
  const int64_t nb = W.cols / kElems;
  for (int64_t r = r0; r < r1; r += kPackRows) {
    const Block* w = (const Block*)W.data + (r / kPackRows) * nb;
    int64_t t = t0;
    for (; t + kT <= t1; t += kT) Tile<kT>::run(w, nb, xa, xs, t, W.rows, r, y);
    if constexpr (kT > 4)
      if (t + 4 <= t1) {
        Tile<4>::run(w, nb, xa, xs, t, W.rows, r, y);
        t += 4;
      }
    for (; t < t1; ++t) Tile<1>::run(w, nb, xa, xs, t, W.rows, r, y);
  }
}

}  // namespace kvforge::tiling
