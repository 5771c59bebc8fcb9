// The `full` policy: every position keeps its K/V row for the whole text.
#include <cstring>

#include "kv/kv_cache.h"
#include "kv/kv_store.h"
#include "util/error.h"

namespace kvforge {

namespace {

class FullCache final : public KvCache {
 public:
  FullCache(const KvShape& shape, int32_t n_ctx, KvStorage storage)
      : store_(shape, n_ctx, storage) {}

  std::string describe() const override {
    return fmt::format("full {}, {} cells", kv_storage_name(store_.storage()), store_.n_cells());
  }
  int32_t capacity() const override { return store_.n_cells(); }
  int32_t n_past() const override { return n_past_; }
  size_t bytes() const override { return store_.bytes(); }
  size_t bytes_per_token() const override { return store_.bytes_per_cell(); }

  void reset() override { n_past_ = 0; }

  KvPlan plan(int32_t n_tokens) const override {
    if ((int64_t)n_past_ + n_tokens > store_.n_cells())
      fail("context full: {} cached + {} new tokens exceed the context size of {} (raise -c or start a new text)",
           n_past_, n_tokens, store_.n_cells());
    KvPlan p;
    p.pos0 = n_past_;
    p.n_tokens = n_tokens;
    p.cells.resize(n_tokens);
    for (int32_t i = 0; i < n_tokens; ++i) p.cells[i] = n_past_ + i;
    return p;
  }

  void write(int layer, const KvPlan& plan, const float* k, const float* v) override {
    for (int32_t i = 0; i < plan.n_tokens; ++i) store_.write_token(layer, plan.cells[i], i, k, v);
  }

  void commit(const KvPlan& plan) override { n_past_ = plan.pos0 + plan.n_tokens; }

  KvView view(int layer, int kv_head, int32_t q_pos) const override {
    KvView v = store_.base_view();
    v.n_segments = 1;
    v.segments[0] = store_.segment(layer, kv_head, 0, q_pos + 1);
    return v;
  }

 private:
  KvStore store_;
  int32_t n_past_ = 0;
};

}  // namespace

std::unique_ptr<KvCache> make_full_cache(const KvShape& shape, int32_t n_ctx, KvStorage storage) {
  if (n_ctx <= 0) fail("context size must be positive, got {}", n_ctx);
  return std::make_unique<FullCache>(shape, n_ctx, storage);
}

}  // namespace kvforge
