// Several sequences in one forward pass over a paged, prefix-shared cache:
// each sequence's logits are bit-identical (memcmp) to evaluating it alone in
// an ordinary single-sequence cache of the same storage, whatever it is
// batched with, however its tokens are chunked, from a shared prefix, after
// a copy-on-write; and the block accounting (sharing, copies, eviction,
// release) is what the design says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kv/kv_layout.h"
#include "kv/paged_cache.h"
#include "model/context.h"
#include "model/convert_mla.h"
#include "tiny_deepseek2.h"
#include "tiny_model.h"
#include "util/error.h"

using namespace kvforge;
using namespace kvforge::testing;

namespace {

std::vector<TokenId> text(int n, int salt) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) t.push_back((TokenId)((i * 37 + salt * 101 + 11) % 256));
  return t;
}

// Logits of every position of toks, evaluated alone in a plain cache.
std::vector<float> solo_logits(const Model& m, const std::vector<TokenId>& toks, const KvPolicy& kv,
                               MlaAttn mla_attn = MlaAttn::Absorbed) {
  ContextParams p;
  p.n_ctx = 1024;
  p.n_threads = 2;
  p.kv = kv;
  p.mla_attn = mla_attn;
  Context ctx(m, p);
  std::vector<float> out(toks.size() * m.config().n_vocab);
  ctx.eval(toks.data(), (int32_t)toks.size(), out.data(), true);
  return out;
}

struct Fixture {
  std::unique_ptr<Model> model;
  PagedKvCache* cache = nullptr;  // owned by ctx
  std::unique_ptr<Context> ctx;

  Fixture(const TinyModelSpec& spec, const KvPolicy& kv, int32_t n_blocks, int32_t n_seqs)
      : Fixture(write_tiny_model(temp_path("paged.gguf"), spec), kv, n_blocks, n_seqs) {}
  Fixture(const std::string& model_path, const KvPolicy& kv, int32_t n_blocks, int32_t n_seqs, int threads = 2,
          MlaAttn mla_attn = MlaAttn::Absorbed) {
    model = Model::load(model_path);
    const ModelConfig& c = model->config();
    auto pc = std::make_unique<PagedKvCache>(kv, c.kv_shape(), 1024,
                                             n_blocks, n_seqs);
    cache = pc.get();
    ContextParams p;
    p.n_ctx = 1024;
    p.n_batch = 96;
    p.n_threads = threads;
    p.mla_attn = mla_attn;
    ctx = std::make_unique<Context>(*model, p, std::move(pc));
  }
  int32_t vocab() const { return model->config().n_vocab; }
};

// Feeds every sequence its tokens from its n_past on, several sequences per
// forward pass, in chunks whose sizes cycle through `chunks`, and checks the
// logits of each chunk's last token against the solo reference.
void run_interleaved(Fixture& f, const std::vector<int32_t>& seqs, const std::vector<std::vector<TokenId>>& texts,
                     const std::vector<std::vector<float>>& refs, const std::vector<int32_t>& chunks) {
  const int32_t V = f.vocab();
  std::vector<std::vector<float>> out(seqs.size(), std::vector<float>(V));
  for (int step = 0;; ++step) {
    std::vector<BatchRun> runs;
    std::vector<size_t> which;
    int32_t budget = 96;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int32_t past = f.cache->n_past_of(seqs[i]);
      const int32_t left = (int32_t)texts[i].size() - past;
      const int32_t n = std::min({left, chunks[(step + i) % chunks.size()], budget});
      if (n <= 0) continue;
      budget -= n;
      runs.push_back({f.cache->plan_for(seqs[i], n), texts[i].data() + past, out[i].data(), false});
      which.push_back(i);
    }
    if (runs.empty()) break;
    f.ctx->decode(runs);
    for (size_t j = 0; j < runs.size(); ++j) {
      const size_t i = which[j];
      const int32_t last = runs[j].plan.pos0 + runs[j].plan.n_tokens - 1;
      ASSERT_EQ(0, std::memcmp(out[i].data(), &refs[i][(size_t)last * V], (size_t)V * 4))
          << "sequence " << seqs[i] << " position " << last << " step " << step;
    }
  }
}

// Five texts of 300, 17, 530, 5 and 260 tokens in sequences 0-4, each
// checked against its solo logits: prefill chunks that cross block
// boundaries, then one-token decodes beside the longer prefills.
void run_five_texts(Fixture& f, const KvPolicy& kv, MlaAttn mla_attn = MlaAttn::Absorbed) {
  const std::vector<int32_t> lens{300, 17, 530, 5, 260};
  std::vector<std::vector<TokenId>> texts;
  std::vector<std::vector<float>> refs;
  std::vector<int32_t> seqs;
  for (int i = 0; i < 5; ++i) {
    texts.push_back(text(lens[i], i));
    refs.push_back(solo_logits(*f.model, texts.back(), kv, mla_attn));
    if (i > 0) f.cache->add_sequence(i);  // 0 exists from the start
    seqs.push_back(i);
  }
  run_interleaved(f, seqs, texts, refs, {37, 1, 64, 1, 1, 13});
}

struct Case {
  std::function<std::string()> write;  // the model, written to a temp file; returns its path
  KvPolicy kv;
  std::string name;
  MlaAttn mla_attn = MlaAttn::Absorbed;
};

class PagedBatch : public ::testing::TestWithParam<Case> {};

TEST_P(PagedBatch, BatchedEqualsSolo) {
  const Case& cs = GetParam();
  Fixture f(cs.write(), cs.kv, 16, 5, 2, cs.mla_attn);
  run_five_texts(f, cs.kv, cs.mla_attn);
  EXPECT_EQ(f.cache->stats().blocks_used, 2 + 1 + 3 + 1 + 2);
}

TEST_P(PagedBatch, SharedPrefixAndCopyOnWrite) {
  const Case& cs = GetParam();
  Fixture f(cs.write(), cs.kv, 16, 4, 2, cs.mla_attn);
  const int32_t V = f.vocab();
  auto solo_logits = [&](const Model& m, const std::vector<TokenId>& toks, const KvPolicy& kv) {
    return ::solo_logits(m, toks, kv, cs.mla_attn);
  };
  // A's text; B = A's first 280 tokens (block 0 whole, block 1 partly) then
  // its own; C = all of A's 300 plus more (reuses the partial block in place).
  const auto a = text(300, 1);
  auto b = std::vector<TokenId>(a.begin(), a.begin() + 280);
  for (TokenId t : text(40, 2)) b.push_back(t);
  auto c = a;
  for (TokenId t : text(20, 3)) c.push_back(t);
  run_interleaved(f, {0}, {a}, {solo_logits(*f.model, a, cs.kv)}, {96});
  EXPECT_EQ(f.cache->stats().blocks_used, 2);

  // B while A still holds the blocks: block 0 shared, block 1 copied on write.
  f.cache->add_sequence(1);
  EXPECT_EQ(f.cache->reuse_prefix(1, b.data(), (int32_t)b.size()), 280);
  EXPECT_EQ(f.cache->stats().blocks_shared, 2);
  run_interleaved(f, {1}, {b}, {solo_logits(*f.model, b, cs.kv)}, {7, 96});
  PagedKvStats st = f.cache->stats();
  EXPECT_EQ(st.copies, 1);
  EXPECT_EQ(st.blocks_shared, 1);
  EXPECT_EQ(st.blocks_used, 3);

  // A finishes: its blocks stay cached; C continues A's text in A's own
  // partial block (no copy), beside B decoding.
  f.cache->remove_sequence(0);
  EXPECT_EQ(f.cache->stats().blocks_cached, 1);  // block 1 of A (block 0 is still B's)
  f.cache->add_sequence(2);
  EXPECT_EQ(f.cache->reuse_prefix(2, c.data(), (int32_t)c.size()), 300);
  auto b2 = b;
  for (TokenId t : text(30, 4)) b2.push_back(t);
  run_interleaved(f, {2, 1}, {c, b2}, {solo_logits(*f.model, c, cs.kv), solo_logits(*f.model, b2, cs.kv)}, {1, 5});
  st = f.cache->stats();
  EXPECT_EQ(st.copies, 1);
  EXPECT_EQ(st.blocks_used, 3);

  // Fork: both continue differently from a shared partial block.
  f.cache->fork(2, 3);
  auto c1 = c, c2 = c;
  c1.push_back(5);
  c2.push_back(6);
  std::vector<float> l1(V), l2(V);
  f.ctx->decode({{f.cache->plan_for(2, 1), &c1.back(), l1.data()}, {f.cache->plan_for(3, 1), &c2.back(), l2.data()}});
  EXPECT_EQ(f.cache->stats().copies, 2);
  EXPECT_EQ(0, std::memcmp(l1.data(), &solo_logits(*f.model, c1, cs.kv)[(c1.size() - 1) * V], (size_t)V * 4));
  EXPECT_EQ(0, std::memcmp(l2.data(), &solo_logits(*f.model, c2, cs.kv)[(c2.size() - 1) * V], (size_t)V * 4));

  // Releasing everything leaves no block in use.
  for (int s : {1, 2, 3}) f.cache->remove_sequence(s);
  EXPECT_EQ(f.cache->stats().blocks_used, 0);
}

// Decode steps of one token for each of six sequences (prompts of 3 to 300
// tokens: views of one and of two 256-row chunks): the attention then runs
// as one task per (token, KV head) pair (model/attention_decode.cpp, with
// the RoPE, the K/V write and the output's conversion for the output
// projection in it), and each sequence's logits stay those of its solo run,
// with 1, 2 and 4 threads (at 4 the 12 pairs are too few to share out and
// the chunks are the tasks, as before).
TEST(PagedDecodeBatch, OneTokenPerSequenceEqualsSolo) {
  TinyModelSpec spec;
  spec.d_model = 128;
  spec.n_kv_head = 2;
  spec.n_ctx_train = 1024;
  spec.weight_type = GgmlType::Q4_1;
  const std::string path = write_tiny_model(temp_path("paged_decode.gguf"), spec);
  const KvPolicy kv = parse_kv_policy("f16");
  const std::vector<int32_t> prompts{40, 300, 3, 17, 256, 90};
  const int32_t n_steps = 4;
  for (int threads : {1, 2, 4}) {
    Fixture f(path, kv, 16, 6, threads);
    const int32_t V = f.vocab();
    std::vector<std::vector<TokenId>> texts;
    std::vector<std::vector<float>> refs;
    std::vector<float> scratch(V);
    for (int i = 0; i < 6; ++i) {
      texts.push_back(text(prompts[i] + n_steps, i));
      refs.push_back(solo_logits(*f.model, texts.back(), kv));
      if (i > 0) f.cache->add_sequence(i);
      for (int32_t p0 = 0, n = 0; p0 < prompts[i]; p0 += n) {  // the Fixture's batch: 96 tokens
        n = std::min(96, prompts[i] - p0);
        f.ctx->decode({{f.cache->plan_for(i, n), texts[i].data() + p0, scratch.data()}});
      }
    }
    std::vector<float> out(6 * V);
    for (int32_t s = 0; s < n_steps; ++s) {
      std::vector<BatchRun> runs;
      for (int i = 0; i < 6; ++i)
        runs.push_back({f.cache->plan_for(i, 1), &texts[i][prompts[i] + s], out.data() + (size_t)i * V});
      f.ctx->decode(runs);
      for (int i = 0; i < 6; ++i)
        ASSERT_EQ(0, std::memcmp(out.data() + (size_t)i * V, &refs[i][(size_t)(prompts[i] + s) * V], (size_t)V * 4))
            << "threads " << threads << " sequence " << i << " step " << s;
    }
  }
}

// A 1024-token model. Specs and policies are built as named values, not
// braced in place: GCC 12 warns falsely (-Wmaybe-uninitialized) about the
// strings of aggregates initialised inside an initializer list.
std::function<std::string()> tiny(const char* arch, int d_model, int n_kv_head, GgmlType weights) {
  TinyModelSpec s;
  s.arch = arch;
  s.d_model = d_model;
  s.n_kv_head = n_kv_head;
  s.n_ctx_train = 1024;
  s.weight_type = weights;
  return [s] { return write_tiny_model(temp_path("paged.gguf"), s); };
}

// Latent (MLA) rows, one per token and layer: a tiny deepseek2, and a tiny
// llama turned into an MLA model by convert-mla (latent 16 + a rope key of 8
// per KV head: rows of 32 values).
std::function<std::string()> deepseek2(bool q_lora) {
  return [q_lora] { return write_tiny_deepseek2(temp_path("paged_mla.gguf"), q_lora); };
}
std::string converted_llama() { return write_converted_tiny_llama("paged"); }

std::vector<Case> cases() {
  return {
    {tiny("llama", 64, 2, GgmlType::Q4_1), parse_kv_policy("f16"), "llama_q41_f16"},
    // Quantized rows need head dims that are multiples of 32.
    {tiny("llama", 128, 4, GgmlType::Q8_0), parse_kv_policy("q8"), "llama_q80_q8"},
    {tiny("gpt2", 128, 4, GgmlType::F16), parse_kv_policy("q4,hadamard"), "gpt2_f16_q4h"},
    {deepseek2(false), parse_kv_policy("f16"), "deepseek2_latent_f16"},
    {deepseek2(true), parse_kv_policy("q8"), "deepseek2_qlora_latent_q8"},
    {converted_llama, parse_kv_policy("f16"), "converted_latent_f16"},
    // 32 values, V the first 16: stored as one q4 block, V padded to 32
    {converted_llama, parse_kv_policy("q4,hadamard"), "converted_latent_q4h"},
    // The naive latent path (K/V decompressed per head) over block tables
    {deepseek2(true), parse_kv_policy("q8"), "deepseek2_qlora_latent_q8_naive", MlaAttn::Naive},
    {converted_llama, parse_kv_policy("q4,hadamard"), "converted_latent_q4h_naive", MlaAttn::Naive},
  };
}
INSTANTIATE_TEST_SUITE_P(Models, PagedBatch, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(PagedKv, EvictsLeastRecentlyUsedPrefixAndReportsExhaustion) {
  const KvShape shape{1, 1, 32, 32};
  PagedKvCache cache(KvPolicy{}, shape, 1024, 3, 4);
  std::vector<float> k(32 * kKvBlockRows, 0.5f), v(32 * kKvBlockRows, 0.25f);
  auto fill = [&](int32_t seq, const std::vector<int32_t>& toks) {
    const KvPlan p = cache.plan_for(seq, (int32_t)toks.size());
    cache.prepare(p);
    cache.write(0, p, k.data(), v.data());
    cache.commit(p, toks.data());
  };
  std::vector<int32_t> x(kKvBlockRows, 7), y(kKvBlockRows, 8), z(kKvBlockRows, 9);
  fill(0, x);  // block 0
  cache.remove_sequence(0);
  cache.add_sequence(1);
  fill(1, y);  // block 1
  cache.remove_sequence(1);
  EXPECT_EQ(cache.stats().blocks_cached, 2);
  cache.add_sequence(2);
  fill(2, z);  // the free block
  cache.add_sequence(3);
  std::vector<int32_t> w(10, 4);
  fill(3, w);  // evicts x's block, the least recently released
  PagedKvStats st = cache.stats();
  EXPECT_EQ(st.evictions, 1);
  EXPECT_EQ(st.blocks_used, 2);
  EXPECT_EQ(st.blocks_cached, 1);
  std::vector<int32_t> xq = x;
  xq.push_back(1);
  cache.add_sequence(0);
  EXPECT_EQ(cache.reuse_prefix(0, xq.data(), (int32_t)xq.size()), 0);  // gone
  cache.remove_sequence(0);
  std::vector<int32_t> yq = y;
  yq.push_back(1);
  cache.add_sequence(0);
  EXPECT_EQ(cache.reuse_prefix(0, yq.data(), (int32_t)yq.size()), kKvBlockRows);  // still cached
  // Every block held: the next one cannot be had.
  EXPECT_THROW(fill(0, {1}), Error);
  EXPECT_THROW(PagedKvCache(parse_kv_policy("h2o:64"), shape, 1024, 3, 4), Error);
}

// Streaming heads (window policies, per-head mixed caches) attend to a ring
// per sequence, laid out as the single-sequence cache's: batched, chunked,
// past the ring's wrap, each sequence's logits are bit-identical to its solo
// run with the same policy; when every head streams, blocks behind the
// window go back to the pool.
struct WindowCase {
  const char* kv;
  int32_t blocks_used;  // after the five texts: 2+1+3+1+2 blocks unless released
};
void PrintTo(const WindowCase& c, std::ostream* os) { *os << c.kv; }  // test names that do not change per run

class PagedWindow : public ::testing::TestWithParam<WindowCase> {};

TEST_P(PagedWindow, BatchedEqualsSoloAndReleasesBlocksBehindTheWindow) {
  const KvPolicy kv = parse_kv_policy(GetParam().kv);
  Fixture f({.d_model = 128, .n_kv_head = 4, .n_ctx_train = 1024}, kv, 16, 5);
  run_five_texts(f, kv);
  EXPECT_EQ(f.cache->stats().blocks_used, GetParam().blocks_used);
}

INSTANTIATE_TEST_SUITE_P(Policies, PagedWindow,
                         ::testing::Values(
                             // window 40: the 530-token text keeps blocks 1-2, the 300 one block 1
                             WindowCase{"window:40,sinks:4", 7}, WindowCase{"window:33,sinks:0+q4,hadamard", 7},
                             WindowCase{"window:200,sinks:2+q8", 8},  // only block 0 of the 530 one
                             // full-history heads read every block: none released
                             WindowCase{"heads:full:0-1/1-3,sinks:2,recent:24", 9}),
                         [](const auto& info) { return std::to_string(info.index); });

// A prefix shared from the blocks fills the rings of the sequence reusing it
// (also from a block its first owner released when it fell out of the
// window); a fork copies them; going back before a released block is an error.
TEST(PagedWindowPrefix, SharedPrefixFillsTheRings) {
  const KvPolicy kv = parse_kv_policy("window:40,sinks:4");
  Fixture f({.d_model = 128, .n_kv_head = 4, .n_ctx_train = 1024}, kv, 16, 4);
  const int32_t V = f.vocab();
  const auto a = text(300, 1);
  auto b = std::vector<TokenId>(a.begin(), a.begin() + 280);
  for (TokenId t : text(40, 2)) b.push_back(t);
  run_interleaved(f, {0}, {a}, {solo_logits(*f.model, a, kv)}, {96});
  EXPECT_EQ(f.cache->stats().blocks_used, 1);  // block 0 fell out of the window: cached
  EXPECT_EQ(f.cache->stats().blocks_cached, 1);
  f.cache->add_sequence(1);
  EXPECT_EQ(f.cache->reuse_prefix(1, b.data(), (int32_t)b.size()), 280);
  run_interleaved(f, {1}, {b}, {solo_logits(*f.model, b, kv)}, {7, 96});
  f.cache->fork(1, 2);
  auto b1 = b, b2 = b;
  b1.push_back(5);
  b2.push_back(6);
  std::vector<float> l1(V), l2(V);
  f.ctx->decode({{f.cache->plan_for(1, 1), &b1.back(), l1.data()}, {f.cache->plan_for(2, 1), &b2.back(), l2.data()}});
  EXPECT_EQ(0, std::memcmp(l1.data(), &solo_logits(*f.model, b1, kv)[(b1.size() - 1) * V], (size_t)V * 4));
  EXPECT_EQ(0, std::memcmp(l2.data(), &solo_logits(*f.model, b2, kv)[(b2.size() - 1) * V], (size_t)V * 4));
  EXPECT_THROW(f.cache->truncate(1, 100), Error);  // block 0 (the sinks) is gone
}

// Admission reserves, for a sequence whose every head streams, only the
// blocks its window and one chunk reach (blocks_to_reserve): a pool of
// exactly that per sequence serves three long texts fed in chunks of up to
// 96, one of them reusing another's prefix (whose blocks behind the window
// it releases at once), with the solo logits.
TEST(PagedWindowPrefix, PoolOfReservedBlocksSuffices) {
  const KvPolicy kv = parse_kv_policy("window:40,sinks:4");
  const KvShape any_shape{2, 4, 32, 32};
  const int32_t reserve = PagedKvCache::blocks_to_reserve(resolve_kv_layout(kv, any_shape, 1024), 1000, 96);
  EXPECT_EQ(reserve, 3);  // 40 + 96 rows touch at most 2 blocks, + 1 for a copy
  EXPECT_EQ(PagedKvCache::blocks_to_reserve(resolve_kv_layout(KvPolicy{}, any_shape, 1024), 1000, 96),
            PagedKvCache::blocks_for(1000));
  EXPECT_EQ(PagedKvCache::blocks_to_reserve(resolve_kv_layout(kv, any_shape, 1024), 100, 96), 2);  // short text
  Fixture f({.d_model = 128, .n_kv_head = 4, .n_ctx_train = 1024}, kv, 3 * reserve, 3);
  const auto a = text(700, 1), c = text(650, 3);
  auto b = std::vector<TokenId>(a.begin(), a.begin() + 600);
  for (TokenId t : text(100, 2)) b.push_back(t);
  run_interleaved(f, {0}, {a}, {solo_logits(*f.model, a, kv)}, {96});
  f.cache->add_sequence(1);
  EXPECT_EQ(f.cache->reuse_prefix(1, b.data(), (int32_t)b.size()), 600);
  EXPECT_LE(f.cache->stats().blocks_used, 2 * reserve);
  f.cache->add_sequence(2);
  run_interleaved(f, {0, 1, 2}, {a, b, c}, {solo_logits(*f.model, a, kv), solo_logits(*f.model, b, kv),
                                            solo_logits(*f.model, c, kv)}, {96, 1, 61, 1});
}

// Latent (MLA) rows under a window policy: the one latent row per token and
// layer streams through the same rings as per-head rows, batched = solo, and
// blocks behind the window go back to the pool (as in PagedWindow).
class PagedWindowLatent : public ::testing::TestWithParam<Case> {};

TEST_P(PagedWindowLatent, BatchedEqualsSoloAndReleasesBlocksBehindTheWindow) {
  const Case& cs = GetParam();
  Fixture f(cs.write(), cs.kv, 16, 5);
  run_five_texts(f, cs.kv);
  EXPECT_EQ(f.cache->stats().blocks_used, 7);  // as window:40 in PagedWindow
}

INSTANTIATE_TEST_SUITE_P(Models, PagedWindowLatent,
                         ::testing::Values(Case{deepseek2(false), parse_kv_policy("window:40,sinks:4"),
                                                "deepseek2_latent_window"},
                                           Case{converted_llama, parse_kv_policy("window:40,sinks:2+q8"),
                                                "converted_latent_window_q8"}),
                         [](const auto& info) { return info.param.name; });

// A model's own sliding-window layers (Gemma 2/3's local layers): the layout
// make_paged_cache builds keeps the window only in those layers, and the
// batched logits are those of the single-sequence cache with that layout.
TEST(PagedWindowPrefix, PerLayerWindowsEqualSolo) {
  const TinyModelSpec spec{.d_model = 128, .n_kv_head = 4, .n_ctx_train = 1024};
  auto model = Model::load(write_tiny_model(temp_path("paged_layers.gguf"), spec));
  KvLayout layout = resolve_kv_layout(KvPolicy{}, model->config().kv_shape(), 1024);
  limit_layer_window(layout, 1, 48);
  ContextParams p;
  p.n_ctx = 1024;
  p.n_batch = 96;
  p.n_threads = 2;
  Context solo(*model, p, make_kv_cache(layout));
  auto owned = std::make_unique<PagedKvCache>(layout, 1024, 12, 3);
  PagedKvCache& cache = *owned;
  Context batched(*model, p, std::move(owned));
  const int32_t V = model->config().n_vocab;
  const auto t = text(200, 5);
  std::vector<float> ref(t.size() * V), got(V);
  for (size_t i = 0; i < t.size(); i += 50) solo.eval(&t[i], 50, &ref[i * V], true);
  cache.add_sequence(1);
  const auto other = text(120, 6);
  for (int32_t i = 0; i < 200; i += 25) {  // beside another sequence's decodes
    std::vector<float> scratch(V);
    batched.decode({{cache.plan_for(0, 25), &t[i], got.data()}, {cache.plan_for(1, 1), &other[i / 25], scratch.data()}});
    ASSERT_EQ(0, std::memcmp(got.data(), &ref[(size_t)(i + 24) * V], (size_t)V * 4)) << "position " << i + 24;
  }
}

}  // namespace
