#pragma once
// The Python Context: a kvforge::Context plus a lock, so that two Python
// threads calling into one Context get an error instead of a data race.
#include <mutex>

#include "model/context.h"
#include "util/error.h"

namespace kvforge::python {

struct ContextHandle {
  ContextHandle(const Model& model, const ContextParams& params);
  using Lock = std::unique_lock<std::mutex>;
  // Throws kvforge::Error when another thread is inside this context.
  Lock lock();

  Context ctx;
  std::mutex busy;
};

}  // namespace kvforge::python
