#pragma once
// A running text: the KV cache, the thread pool and the activation buffers
// of one sequence, plus the forward pass that fills them.
#include <functional>
#include <memory>
#include <vector>

#include "backend/thread_pool.h"
#include "kv/kv_cache.h"
#include "kv/kv_policy.h"
#include "kv/paged_cache.h"
#include "model/mla_naive.h"
#include "model/model.h"
#include "ops/attention.h"
#include "util/op_timer.h"

namespace kvforge {

// How latent (MLA) layers attend (--mla-attn, model/attention_mla*.cpp).
// Absorbed: the heads score the latent rows directly; Naive: K and V are
// decompressed per head for the rows attended, then ordinary attention.
// Both are batch-invariant; they differ only by rounding. Auto: naive for a
// sequence's kMlaNaiveMinTokens or more tokens in one forward pass (long
// prefills), absorbed otherwise (decode) -- faster, but prefill and decode
// then round differently, so logits depend on the batch split.
enum class MlaAttn : uint8_t { Absorbed, Naive, Auto };
MlaAttn parse_mla_attn(const std::string& name);  // "absorbed" | "naive" | "auto"; throws kvforge::Error
const char* mla_attn_name(MlaAttn a);
constexpr int32_t kMlaNaiveMinTokens = 128;  // Auto's crossover (README: Latent cache)

struct ContextParams {
  int32_t n_ctx = 0;     // cache capacity in tokens; 0 = min(training context, 4096)
  int32_t n_batch = 256; // tokens per forward pass during prefill
  int n_threads = 0;     // 0 = physical cores
  KvPolicy kv;          // cache policy (--kv)
  MlaAttn mla_attn = MlaAttn::Absorbed;  // latent (MLA) layers only
};

// Progress of one eval() call: (tokens done, tokens in the call), reported
// before the first forward batch and after each one (long prefills).
using ProgressFn = std::function<void(int32_t done, int32_t total)>;

// One sequence's part of a batch (Context::decode).
struct BatchRun {
  KvPlan plan;                     // from the cache: sequence, first position, number of tokens
  const TokenId* tokens = nullptr; // [plan.n_tokens]
  float* logits = nullptr;         // none, or [n_vocab] for the last token ([n_tokens][n_vocab] with all_logits)
  bool all_logits = false;
};

// The context size that n_ctx = 0 stands for: min(training context, 4096).
int32_t default_context_size(const ModelConfig& c);

// A multi-sequence cache for Context(model, params, cache): sequences 0 ..
// n_seqs-1 (sequence 0 added), params.kv's storage, n_blocks blocks (0:
// enough for every sequence to grow to params.n_ctx in batches of
// params.n_batch, plus one each for a copy-on-write: n_seqs *
// PagedKvCache::blocks_to_reserve). Resolves params.n_ctx = 0 to the
// default size.
std::unique_ptr<PagedKvCache> make_paged_cache(const ModelConfig& c, ContextParams& params, int32_t n_seqs,
                                               int32_t n_blocks = 0);

// Tokens per slice of the feed-forward block (bounds its [tokens][d_ff]
// buffers, the largest activations).
constexpr int32_t kFfnSlice = 64;

class Context {
 public:
  Context(const Model& model, const ContextParams& params);
  // With a cache built by the caller (params.kv is then unused), e.g. a
  // multi-sequence PagedKvCache whose sequences the caller manages.
  Context(const Model& model, const ContextParams& params, std::unique_ptr<KvCache> cache);

  // Runs `n` tokens through the model at positions n_past() .. n_past()+n-1
  // and appends them to the cache. logits: [n_vocab] for the last token, or
  // [n][n_vocab] when all_logits. Throws kvforge::Error (context full) before
  // touching the cache if the tokens do not fit. progress (optional) sees
  // every batch.
  void eval(const TokenId* tokens, int32_t n, float* logits, bool all_logits = false,
            const ProgressFn& progress = {});

  // Several sequences' tokens in one forward pass (weights read once for
  // all): at most n_batch tokens in all, one run per sequence. Each run's
  // logits are bit-identical to evaluating it alone (batch-invariant kernels).
  void decode(const std::vector<BatchRun>& runs);

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
  // Calibration (kvforge convert-mla): fn(layer, xn, q, k, n) in every GQA
  // layer of every forward pass, with the attention block's normalised input
  // xn [n][d_model] and the queries and keys after RoPE, q [n][q_dim] and
  // k [n][k_dim]. Empty: none.
  using AttnObserver = std::function<void(int layer, const float* xn, const float* q, const float* k, int32_t n)>;
  void observe_attention_inputs(AttnObserver fn) { observer_ = std::move(fn); }
  int n_threads() const { return pool_.size(); }
  // Per-op timing of every later forward pass into *t (null: off; see
  // util/op_timer.h). The caller owns t and keeps it alive while set.
  void set_op_timer(OpTimer* t) {
    timer_ = t;
    scratch_.timer = t;
    pool_.set_timer(t);
  }

 private:
  // A run's tokens, or a wave of them, whose rows start at row0 of the batch.
  struct Wave {
    KvPlan plan;
    int32_t row0 = 0;
  };
  void forward(const std::vector<BatchRun>& runs);
  // The output head for the runs that want logits.
  void output_logits(const std::vector<BatchRun>& runs);

  // One function per block kind (LayerConfig). The attention blocks read xn_
  // (the normalised input of the batch's n tokens) and write attn_; the
  // feed-forward blocks map ns rows xs: [ns][d_model] to out: [ns][d_model].
  void attention_gqa(int layer, const std::vector<BatchRun>& runs, int32_t n);
  void attention_mla(int layer, const std::vector<BatchRun>& runs, int32_t n);  // model/attention_mla.cpp
  void per_head_matmul(const std::vector<WeightMatrix>& mats, int H, int32_t n, int in, int out);  // likewise
  void ffn_dense(const LayerWeights& L, const float* xs, int32_t ns, float* out);
  void ffn_moe(const LayerWeights& L, const float* xs, int32_t ns, float* out);  // model/ffn_moe.cpp
  // Gated feed-forward: out = down(act(gate xs) * up xs), act = silu (SwiGLU)
  // or gelu_tanh (GeGLU); b_up, b_down may be empty.
  void gated_ffn(const WeightMatrix& gate, const WeightMatrix& up, const WeightMatrix& down, const Vec& b_up,
                 const Vec& b_down, bool geglu, const float* xs, int32_t ns, float* out);

  // Softmax attention over the cache: the query heads of KV head h of batch
  // row t start at q + t * q_row + h * group * dk, their outputs at
  // out + t * out_row + h * group * dv.
  struct AttnArgs {
    const float* q;
    size_t q_row;
    float* out;
    size_t out_row;
    int n_kv_head, group, dk, dv;
    float scale;
    // MLA: the naive path's arguments when rows of the batch take it
    // (MlaNaive::row_naive), else null; in that path, the decompressed rows
    // that head h's views map to (model/attention_mla_naive.cpp).
    const AttnArgs* naive = nullptr;
    const LatentRows* rows = nullptr;
  };
  // Attention of the waves of latent rows with a.naive set: the absorbed
  // ones as usual, the naive ones over their decompressed rows.
  void attention_mla_naive(int layer, const std::vector<Wave>& waves, const AttnArgs& a);
  // Writes the runs' K/V rows (k: row t at k + t * k_row, v likewise; v null
  // for latent rows) and attends, in waves per head (see the .cpp).
  void write_and_attend(int layer, const std::vector<BatchRun>& runs, const float* k, size_t k_row, const float* v,
                        size_t v_row, const AttnArgs& a);
  // A decode batch (one token per run, enough (token, KV head) pairs to share
  // out, full-history heads): RoPE (rope null: none; cs [n][n_rot]), K/V
  // write, attention and the conversion of its output for the output
  // projection wo (into attn_xq_, when wo's kernel reads 8-bit blocks that a
  // pair's outputs fill) per pair, in one pool job
  // (model/attention_decode.cpp). False, with nothing done: not such a batch.
  bool attend_decode_pairs(int layer, const std::vector<BatchRun>& runs, float* q, float* k, size_t k_row,
                           const float* v, size_t v_row, const AttnArgs& a, const Rope* rope, const float* cs,
                           int n_rot, const WeightMatrix& wo);
  // Attention of the waves' tokens, for the KV heads h with heads[h] != 0
  // (nullptr: all).
  void attention(int layer, const std::vector<Wave>& waves, const AttnArgs& a, const uint8_t* heads);
  // Hands the waves' queries to a cache that learns from attention (token
  // eviction), for the KV heads h with heads[h] != 0 (nullptr: all).
  void observe(int layer, const std::vector<Wave>& waves, const AttnArgs& a, const uint8_t* heads);
  // One query token's heads of one KV head (q: [group][dk], out: [group][dv]),
  // with the head's soft gate; attend_view: one view, with the model's score
  // soft-cap.
  void attend_head(int layer, int kv_head, int32_t pos, int32_t seq, const AttnArgs& a, const float* q, float* out);
  void attend_view(const AttnArgs& a, const float* q, const KvView& view, float* out);

  const Model& model_;
  ContextParams params_;
  ThreadPool pool_;
  std::unique_ptr<KvCache> cache_;
  MatmulScratch scratch_;
  AttnObserver observer_;
  OpTimer* timer_ = nullptr;  // per-op timing, when set
  Rope rope_, rope_local_;  // the model's RoPEs for this context size (LongRoPE picks its factors by it)

  // Activations for up to n_batch tokens:
  std::vector<float> x_;     // [n_batch][d_model]  residual stream
  std::vector<float> xn_;    // [n_batch][d_model]  normalised input of a block
  std::vector<float> q_;     // [n_batch][n_head * head_dim_k]     queries
  std::vector<float> k_;     // [n_batch][n_kv_head * head_dim_k]  keys
  std::vector<float> v_;     // [n_batch][n_kv_head * head_dim_v]  values
  std::vector<float> attn_;  // [n_batch][n_head * head_dim_v]     attention output
  std::vector<uint8_t> attn_xq_;  // [n_batch][ActForm(wo).row_bytes()]  attn_ converted for the output projection
  bool attn_xq_ready_ = false;    // attn_xq_ holds this layer's attn_, converted (attend_decode_pairs)
  std::vector<float> tmp_;   // [n_batch][d_model]  block output before the residual add
  std::vector<float> gate_;  // [kFfnSlice][ff]  SwiGLU/GeGLU only; ff: the widest FFN (dense, shared or one expert)
  std::vector<float> up_;    // [kFfnSlice][ff]
  std::vector<uint8_t> ffn_xq_;  // [kFfnSlice][ActForm(down).row_bytes()]  gate_ converted for the down projection
  // MLA layers (H heads, latent d_c, R rope dims, P nope, V value dims). LR
  // and DV: the cached row's width d_c + RW and its V prefix d_c, rounded up
  // to whole blocks for quantized storage (stored_kv_shape; zero padding).
  int mla_row_ = 0, mla_dv_ = 0;  // LR, DV
  std::vector<float> qa_;     // [n_batch][q_lora_rank]  compressed queries
  std::vector<float> kv_;     // [n_batch][LR]     latent rows [c_KV | k_pe | 0...], as cached
  std::vector<float> qlat_;   // [n_batch][H][LR]  queries absorbed into the latent space
  std::vector<float> mla_cs_;  // [n_batch][RW]  cos/sin of each rope-key pair (MlaWeights::rope_pairs)
  Rope mla_rope_;              // adjacent pairs over one rope key's R dims, angles from mla_cs_
  std::vector<float> olat_;   // [n_batch][H][DV]  attention output in the latent space (first d_c used)
  std::vector<float> head_x_, head_y_;  // [H][mla_block_][max(P, d_c, V)]  the heads' rows, gathered
  int32_t mla_block_ = 0;  // tokens per per-head projection call (bounds head_x_, head_y_)
  std::vector<int32_t> mla_rows_;  // batch rows that take the absorbed path
  MlaNaive mla_naive_;             // the naive path (--mla-attn naive|auto) only
  // MoE layers:
  std::vector<float> router_;    // [kFfnSlice][n_expert]        router scores
  std::vector<int32_t> sel_;     // [kFfnSlice][n_expert_used]   chosen experts, best first
  std::vector<float> sel_w_;     // [kFfnSlice][n_expert_used]   their weights
  std::vector<float> xe_;        // [kFfnSlice][d_model]         one expert's tokens, gathered
  std::vector<float> ye_;        // [kFfnSlice][d_model]         their outputs
  std::vector<float> slot_out_;  // [kFfnSlice][n_expert_used][d_model]  each chosen expert's output
  std::vector<float> rope_cs_;  // [n_batch][n_rot]  cos/sin of each token's RoPE angles
  std::vector<float> rope_local_cs_;  // [n_batch][rope_local.n_rot]  the same for LayerRope::Local layers
  std::vector<int32_t> pos_;    // [n_batch]  each token's position
  std::vector<TokenId> tok_;    // [n_batch]  each token's id
  std::vector<Wave> waves_;     // waves of one layer
  std::vector<int32_t> wave_done_;  // [runs]  tokens of each run written so far in this layer
  std::vector<float> logits_;   // [rows][n_vocab]  when several runs want logits
  std::vector<int32_t> logit_rows_;  // batch rows whose logits are wanted
  // Attention of one (token, KV head) pair; a prefill item is a run of up to
  // kAttnMaxTokens tokens of one wave (pair: its first token).
  struct AttnPair {
    int32_t row, pos, seq, head, n_tok;
  };
  // Split attention (decode): one item per (pair, chunk).
  struct AttnItem {
    int64_t pair;
    AttnChunk chunk;
  };
  std::vector<AttnPair> attn_pairs_;
  std::vector<AttnItem> attn_items_;
  std::vector<AttnChunk> attn_chunks_;
  std::vector<int64_t> attn_first_;  // [pairs + 1]  first item of each pair
  std::vector<float> attn_parts_;    // [items][attn_partial_floats]
  std::vector<float> attn_stream_;   // [group][head_dim_v]  a gated head's streaming attention (decode)
  std::vector<uint8_t> whole_heads_; // [n_kv_head]  heads that take every run in one wave
  std::vector<int> seq_heads_;       // the others, written and attended token by token
};

}  // namespace kvforge
