#pragma once
// A running text: the KV cache, the thread pool and the activation buffers
// of one sequence, plus the forward pass that fills them.
#include <memory>
#include <vector>

#include "backend/thread_pool.h"
#include "kv/kv_cache.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "ops/attention.h"

namespace kvforge {

struct ContextParams {
  int32_t n_ctx = 0;     // cache capacity in tokens; 0 = min(training context, 4096)
  int32_t n_batch = 256; // tokens per forward pass during prefill
  int n_threads = 0;     // 0 = physical cores
  KvPolicy kv;          // cache policy (--kv)
};

// Tokens per slice of the feed-forward block (bounds its [tokens][d_ff]
// buffers, the largest activations).
constexpr int32_t kFfnSlice = 64;

class Context {
 public:
  Context(const Model& model, const ContextParams& params);

  // Runs `n` tokens through the model at positions n_past() .. n_past()+n-1
  // and appends them to the cache. logits: [n_vocab] for the last token, or
  // [n][n_vocab] when all_logits. Throws kvforge::Error (context full) before
  // touching the cache if the tokens do not fit.
  void eval(const TokenId* tokens, int32_t n, float* logits, bool all_logits = false);

  void reset() { cache_->reset(); }
  // Soft gates per (layer, KV head) (see KvCache::set_gates): alpha
  // [n_layer][n_kv_head] blends full attention with attention to the first
  // `sinks` and last `recent` tokens. Takes effect from the next eval().
  void set_gates(const std::vector<float>& alpha, int32_t sinks, int32_t recent) {
    cache_->set_gates(alpha, sinks, recent);
  }
  int32_t n_past() const { return cache_->n_past(); }
  int32_t n_ctx() const { return cache_->capacity(); }
  const KvCache& cache() const { return *cache_; }
  const Model& model() const { return model_; }
  int n_threads() const { return pool_.size(); }

 private:
  void forward(const TokenId* tokens, int32_t n, float* logits, bool all_logits);
  // One layer's K/V writes and attention, in waves per head (see the .cpp).
  void write_and_attend(int layer, const KvPlan& plan);
  // Attention of the plan's tokens: rows 0.. of q_ into the same rows of
  // attn_, for the KV heads h with heads[h] != 0 (nullptr: all).
  void attention(int layer, const KvPlan& plan, const uint8_t* heads);
  // One query token's heads of one KV head (q: [group][head_dim_k], out:
  // [group][head_dim_v]), with the head's soft gate.
  void attend_head(int layer, int kv_head, int32_t pos, const float* q, float* out);

  const Model& model_;
  ContextParams params_;
  ThreadPool pool_;
  std::unique_ptr<KvCache> cache_;
  MatmulScratch scratch_;

  // Activations for up to n_batch tokens:
  std::vector<float> x_;     // [n_batch][d_model]  residual stream
  std::vector<float> xn_;    // [n_batch][d_model]  normalised input of a block
  std::vector<float> q_;     // [n_batch][n_head * head_dim_k]     queries
  std::vector<float> k_;     // [n_batch][n_kv_head * head_dim_k]  keys
  std::vector<float> v_;     // [n_batch][n_kv_head * head_dim_v]  values
  std::vector<float> attn_;  // [n_batch][n_head * head_dim_v]     attention output
  std::vector<float> tmp_;   // [n_batch][d_model]  block output before the residual add
  std::vector<float> gate_;  // [kFfnSlice][d_ff]  SwiGLU/GeGLU only
  std::vector<float> up_;    // [kFfnSlice][d_ff]
  std::vector<float> rope_cs_;  // [n_batch][n_rot]  cos/sin of each token's RoPE angles
  std::vector<float> rope_local_cs_;  // [n_batch][rope_local.n_rot]  the same for LayerRope::Local layers
  // Split attention (decode): one item per (token x KV head pair, chunk).
  struct AttnItem {
    int64_t pair;
    AttnChunk chunk;
  };
  std::vector<AttnItem> attn_items_;
  std::vector<AttnChunk> attn_chunks_;
  std::vector<int64_t> attn_first_;  // [pairs + 1]  first item of each pair
  std::vector<float> attn_parts_;    // [items][attn_partial_floats]
  std::vector<float> attn_stream_;   // [group][head_dim_v]  a gated head's streaming attention (decode)
  std::vector<uint8_t> whole_heads_; // [n_kv_head]  heads that take the batch in one wave
  std::vector<int> seq_heads_;       // the others, written and attended token by token
};

}  // namespace kvforge
