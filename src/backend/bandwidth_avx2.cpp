// The read loop of the bandwidth probe with 256-bit loads (compiled with
// -mavx2, called only when the CPU has AVX2).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace kvforge {

uint64_t stream_read_avx2(const void* data, size_t n) {
  const __m256i* p = (const __m256i*)data;
  const size_t nv = n / 32;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 8 <= nv; i += 8) {  // four independent chains, 256 bytes per iteration
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(p + i + 0));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(p + i + 1));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(p + i + 2));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(p + i + 3));
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(p + i + 4));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(p + i + 5));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(p + i + 6));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(p + i + 7));
  }
  for (; i < nv; ++i) a0 = _mm256_xor_si256(a0, _mm256_load_si256(p + i));
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256((__m256i*)lanes, a);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

}  // namespace kvforge
