#include "model/packed_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <map>

#include "ops/matmul.h"
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

// All packed matrices share one arena, in 2 MiB-aligned transparent huge
// pages where the kernel grants them (madvise): a decode step streams every
// weight once, and with 4 KiB pages that is a TLB miss (a page walk) every
// 4 KiB of it, some 24,000 per token for a 100 MB model.
void PackedWeights::pack(ModelWeights& w) {
  std::vector<WeightMatrix*> all = {&w.tok_embd, &w.output};
  for (LayerWeights& L : w.layers)
    for (WeightMatrix* m : L.matrices()) all.push_back(m);
  constexpr size_t kAlign = 4096, kHuge = 2u << 20;
  std::map<const void*, size_t> offset;  // original data -> offset of its copy in the arena
  size_t total = 0;
  for (const WeightMatrix* m : all)
    if (packable(*m) && offset.emplace(m->data, total).second) total += (packed_bytes(*m) + kAlign - 1) / kAlign * kAlign;
  if (total == 0) return;
  const size_t n = total + kHuge;  // room to start at a 2 MiB boundary
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("cannot allocate {} bytes for repacked weights", total);
  buffers_.push_back({p, n});
  uint8_t* base = (uint8_t*)(((uintptr_t)p + kHuge - 1) & ~(uintptr_t)(kHuge - 1));
#ifdef MADV_HUGEPAGE
  madvise(base, total, MADV_HUGEPAGE);  // a hint: without it (or THP off) the pages are 4 KiB
#endif
  std::map<const void*, WeightMatrix> done;  // original data -> packed view
  for (WeightMatrix* m : all) {
    if (!packable(*m)) continue;
    if (auto it = done.find(m->data); it != done.end()) {
      *m = it->second;
      continue;
    }
    const WeightMatrix packed = pack_matrix(*m, base + offset.at(m->data));
    release_pages(m->data, (size_t)m->rows * m->row_stride);
    done.emplace(m->data, packed);
    *m = packed;
  }
}

}  // namespace kvforge
