#pragma once
// AVX-512 intrinsics for the *_avx512.cpp (and *_avx512bf16.cpp) kernel
// sources, native or emulated.
//
// Native (the library): the file is compiled with -mavx512f/bw/vl/dq/vnni
// (plus -mavx512bf16 for *_avx512bf16.cpp) and its kernels live in
// kvforge::avx512; they run only where cpu_features() says so.
//
// Emulated (KVFORGE_AVX512_EMULATED, unit-test binary only): the same source
// is compiled a second time without any -mavx512* flag. SIMDe implements the
// _mm512_* / VNNI intrinsics portably (on top of AVX2 where the file has
// -mavx2), and the kernels land in kvforge::avx512_emu, so both copies link
// into one binary and the kernels are tested on CPUs without AVX-512.
//
// Kernel sources use only intrinsics that SIMDe 0.7.4 (Debian 12) provides,
// plus the few helpers below for those it lacks. They must not call inline
// functions of shared headers that may be emitted out of line (fp16_to_fp32,
// std:: templates): the linker could keep this file's AVX-512 copy for every
// caller and a non-AVX-512 CPU would then fault.
#if defined(KVFORGE_AVX512_EMULATED)
#if defined(__AVX512F__)
#error "the emulated AVX-512 kernels must be compiled without -mavx512f"
#endif
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define KVFORGE_AVX512_NS avx512_emu
#else
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512VNNI__)
#error "*_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni (see CMakeLists.txt)"
#endif
// GCC 12's _mm512_undefined_*() initialise a variable with itself, which
// -Wuninitialized flags wherever they are inlined (fixed in GCC 12.3).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#define KVFORGE_AVX512_NS avx512
#endif

#include <cstdint>

namespace kvforge::KVFORGE_AVX512_NS {
// Internal linkage: TUs built with different flags (-mavx512bf16, or SIMDe
// without -mavx512*) each keep their own copies, so the linker can never
// hand one TU's instructions to another.
namespace {

#if defined(KVFORGE_AVX512_EMULATED)
// SIMDe 0.7.4 lacks these; two 256-bit halves give the same bits (the
// conversions are exact or round-to-nearest-even, lane by lane).
inline __m256 lo256_ps(__m512 v) { return _mm512_castps512_ps256(v); }
inline __m256 hi256_ps(__m512 v) {
  alignas(64) float f[16];  // [16]
  _mm512_store_ps(f, v);
  return _mm256_load_ps(f + 8);
}
inline __m512 from_halves_ps(__m256 lo, __m256 hi) {
  alignas(64) float f[16];  // [16]
  _mm256_store_ps(f, lo);
  _mm256_store_ps(f + 8, hi);
  return _mm512_load_ps(f);
}
inline __m512 cvtepi32_ps512(__m512i v) {
  return from_halves_ps(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v)),
                        _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1)));
}
inline __m512i cvtps_epi32_512(__m512 v) {  // rounding as MXCSR says (nearest even)
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_cvtps_epi32(lo256_ps(v))), _mm256_cvtps_epi32(hi256_ps(v)),
                            1);
}
inline __m512 cvtph_ps512(__m256i h) {  // 16 fp16 -> 16 f32
  return from_halves_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
inline __m512i cvtepu16_epi32_512(__m256i h) {  // 16 u16 -> 16 u32
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h))),
                            _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 1);
}
#else
inline __m256 lo256_ps(__m512 v) { return _mm512_castps512_ps256(v); }
inline __m256 hi256_ps(__m512 v) { return _mm512_extractf32x8_ps(v, 1); }
inline __m512 from_halves_ps(__m256 lo, __m256 hi) { return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1); }
inline __m512 cvtepi32_ps512(__m512i v) { return _mm512_cvtepi32_ps(v); }
inline __m512i cvtps_epi32_512(__m512 v) { return _mm512_cvtps_epi32(v); }
inline __m512 cvtph_ps512(__m256i h) { return _mm512_cvtph_ps(h); }
inline __m512i cvtepu16_epi32_512(__m256i h) { return _mm512_cvtepu16_epi32(h); }
#endif

// v with its 16-bit lane `lane` set to x (fp16 scales of several rows
// gathered in registers: a stack array would cost a store-forwarding stall).
inline __m128i insert16(__m128i v, uint16_t x, int lane) {
  switch (lane) {  // lane is a compile-time constant after inlining
    case 0: return _mm_insert_epi16(v, x, 0);
    case 1: return _mm_insert_epi16(v, x, 1);
    case 2: return _mm_insert_epi16(v, x, 2);
    case 3: return _mm_insert_epi16(v, x, 3);
    case 4: return _mm_insert_epi16(v, x, 4);
    case 5: return _mm_insert_epi16(v, x, 5);
    case 6: return _mm_insert_epi16(v, x, 6);
    default: return _mm_insert_epi16(v, x, 7);
  }
}

// Horizontal sums in one fixed order (batch invariance needs a fixed tree).
inline float hsum256_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hsum512_ps(__m512 v) { return hsum256_ps(_mm256_add_ps(lo256_ps(v), hi256_ps(v))); }

}  // namespace
}  // namespace kvforge::KVFORGE_AVX512_NS
