#pragma once
// Memory read-bandwidth probe: the ceiling that decode speed is measured
// against (decode reads every weight and the used KV cache once per token).
#include <cstddef>
#include <cstdint>

namespace kvforge {

struct BandwidthParams {
  int n_threads = 0;           // 0 = physical cores
  size_t total_bytes = 1ull << 30;  // buffer size, split evenly between the threads
  int passes = 5;              // timed passes; the best one is reported
};

struct BandwidthResult {
  double gbs = 0;              // best pass, 1e9 bytes per second
  double mean_gbs = 0;         // mean over the passes
  int n_threads = 0;
  size_t total_bytes = 0;
  int passes = 0;
};

// Each thread first touches, then repeatedly streams (reads) its own slice of
// one large buffer; all threads start a pass together (barrier) and the pass
// ends when the slowest is done. The buffer is unmapped before returning.
BandwidthResult measure_read_bandwidth(const BandwidthParams& params);

// Reads n bytes (multiple of 64, 64-byte aligned) and returns a value that
// depends on all of them, so the compiler cannot drop the loads.
uint64_t stream_read(const void* data, size_t n);

}  // namespace kvforge
