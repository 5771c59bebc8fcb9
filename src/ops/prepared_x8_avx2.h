#pragma once
// What the AVX2 kernels that prepare their weights once per call share
// (matmul_q8x8_avx2.cpp: Q8_0 and IQ4_NL; matmul_kprep_avx2.cpp: IQ4_XS and
// Q3_K): the loop over pairs of row groups, and IQ4_NL's table as |v| and
// sign masks. Include only from *_avx2.cpp files (AVX2 intrinsics inline).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/matmul.h"
#include "ops/quantize.h"
#include "ops/weight_pack.h"

namespace kvforge::x8prep {

// |v| and (v < 0 ? -1 : 0) of IQ4_NL's table, for pshufb.
struct Iq4nlTables {
  alignas(16) int8_t abs[16], neg[16];
};
inline constexpr Iq4nlTables kIq4nl = [] {
  Iq4nlTables x{};
  for (int i = 0; i < 16; ++i) {
    x.abs[i] = (int8_t)(kIq4nlValues[i] < 0 ? -kIq4nlValues[i] : kIq4nlValues[i]);
    x.neg[i] = (int8_t)(kIq4nlValues[i] < 0 ? -1 : 0);
  }
  return x;
}();

// |v| and the sign mask of the table entries q (one nibble per byte).
struct Iq4nlLookup {
  const __m256i tu = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i*)kIq4nl.abs));
  const __m256i tm = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i*)kIq4nl.neg));
  void operator()(__m256i q, __m256i& u, __m256i& m) const {
    u = _mm256_shuffle_epi8(tu, q);
    m = _mm256_shuffle_epi8(tm, q);
  }
};

// Per pair of row groups (a last odd one alone): kPrepare, then tiles of 2
// tokens (one group: 4), then single tokens. kElems: elements per block.
template <class Block, int kElems, class Prep, void (*kPrepare)(const Block*, int64_t, Prep*), class Tile>
void gemm_prepared(const WeightMatrix& W, const uint8_t* xa, size_t xs, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y) {
  const int64_t nb = W.cols / kElems;
  const Block* blocks = (const Block*)W.data;
  thread_local std::vector<Prep> prep;  // [2][nb] the current groups' blocks
  if ((int64_t)prep.size() < 2 * nb) prep.resize(2 * nb);
  const Prep* P = prep.data();
  for (int64_t r = r0; r < r1; r += 2 * kPackRows) {
    const Block* w = blocks + (r / kPackRows) * nb;
    int64_t t = t0;
    if (r + 2 * kPackRows > r1) {  // the odd group
      kPrepare(w, nb, prep.data());
      for (; t + 4 <= t1; t += 4) Tile::template run<1, 4>(P, nb, xa, xs, t, W.rows, r, y);
      for (; t < t1; ++t) Tile::template run<1, 1>(P, nb, xa, xs, t, W.rows, r, y);
      break;
    }
    kPrepare(w, 2 * nb, prep.data());
    // The next groups' weights, spread over this pair's tiles: their
    // prepare then reads cache instead of stalling on memory alone.
    const char* next = (const char*)(w + 2 * nb);
    const int64_t lines = std::clamp<int64_t>((r1 - r) / kPackRows - 2, 0, 2) * nb * sizeof(Block) / 64;
    const int64_t per_tile = lines / ((t1 - t0) / 2) + 1;
    for (int64_t done = 0; t + 2 <= t1; t += 2) {
      for (const int64_t e = std::min(lines, done + per_tile); done < e; ++done) _mm_prefetch(next + 64 * done, _MM_HINT_T0);
      Tile::template run<2, 2>(P, nb, xa, xs, t, W.rows, r, y);
    }
    if (t < t1) Tile::template run<2, 1>(P, nb, xa, xs, t, W.rows, r, y);
  }
}

// Calls of at least kPrepMin tokens take the prepared tiles; fewer (decode
// steps) each type's one-pass tiles.
constexpr int64_t kPrepMin = 16;

}  // namespace kvforge::x8prep
