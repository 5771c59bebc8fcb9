#include "model/packed_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <map>

#include "ops/weight_pack.h"
#include "util/error.h"

namespace kvforge {

namespace {

// Drops the whole pages of [p, p + n) from this process' resident set. For a
// read-only file mapping that is always safe: a later read faults them in.
void release_pages(const void* p, size_t n) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1);
  const uintptr_t b = ((uintptr_t)p + n) & ~(page - 1);
  if (b > a) madvise((void*)a, b - a, MADV_DONTNEED);
}

}  // namespace

PackedWeights::~PackedWeights() {
  for (const Buffer& b : buffers_) munmap(b.p, b.n);
}

size_t PackedWeights::bytes() const {
  size_t n = 0;
  for (const Buffer& b : buffers_) n += b.n;
  return n;
}

void PackedWeights::pack(ModelWeights& w) {
  std::map<const void*, WeightMatrix> done;  // original data -> packed view
  auto pack_one = [&](WeightMatrix& m) {
    if (!packable(m)) return;
    if (auto it = done.find(m.data); it != done.end()) {
      m = it->second;
      return;
    }
    const size_t n = packed_bytes(m);
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("cannot allocate {} bytes for repacked weights", n);
    buffers_.push_back({p, n});
    const WeightMatrix packed = pack_matrix(m, p);
    release_pages(m.data, (size_t)m.rows * m.row_stride);
    done.emplace(m.data, packed);
    m = packed;
  };
  pack_one(w.tok_embd);
  pack_one(w.output);
  for (LayerWeights& L : w.layers)
    for (WeightMatrix* m : L.matrices()) pack_one(*m);
}

}  // namespace kvforge
