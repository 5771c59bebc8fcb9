#pragma once
// The Python contexts: an engine Context plus a lock, so that two Python
// threads calling into one context get an error instead of a data race.
#include <memory>
#include <mutex>

#include "kv/paged_cache.h"
#include "model/context.h"
#include "util/error.h"

namespace kvforge::python {

// One thread at a time inside an object named `what`. Calls that compute
// take the lock while they still hold the GIL, then release the GIL: a
// thread that holds the GIL is then never inside, so it never makes a
// computing call fail as busy (only the other way round).
class Busy {
 public:
  using Lock = std::unique_lock<std::mutex>;
  explicit Busy(const char* what) : what_(what) {}
  // Throws kvforge::Error when another thread is inside.
  Lock lock();

 private:
  std::mutex mutex_;
  const char* what_;
};

struct ContextHandle {
  ContextHandle(const Model& model, const ContextParams& params);
  Busy::Lock lock() { return busy.lock(); }

  Context ctx;
  Busy busy{"Context"};
};

// Several sequences in one multi-sequence (paged) cache (Context::decode).
struct BatchHandle {
  // n_seqs: sequence ids 0 .. n_seqs-1; n_blocks: the cache's pool of
  // blocks, 0 = enough for every sequence to reach params.n_ctx tokens.
  BatchHandle(const Model& model, ContextParams params, int32_t n_seqs, int32_t n_blocks);
  Busy::Lock lock() { return busy.lock(); }

  PagedKvCache* cache;  // owned by ctx
  Context ctx;
  Busy busy{"BatchContext"};

 private:
  BatchHandle(const Model& model, const ContextParams& params, std::unique_ptr<PagedKvCache> c);
};

}  // namespace kvforge::python
