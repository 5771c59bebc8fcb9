#pragma once
// A KV cache for many sequences (the server): fixed-size blocks of
// kKvBlockRows cells from one pool allocated up front, a block table per
// sequence, blocks shared by reference count between sequences with a common
// prefix, copy-on-write when a sequence writes into a shared block, and
// eviction of unused cached prefixes (least recently used first).
//
// Cell metadata is kept apart from tensor storage (a KvStore whose every
// (layer, head) has n_blocks * kKvBlockRows cells; block b owns cells
// b * kKvBlockRows ..): a sequence's row r lives in block blocks[r /
// kKvBlockRows], cell r % kKvBlockRows. Rows are filled in order and row ==
// position here; a token-eviction policy (H2O, SnapKV) is the same table
// with rows compacted and positions kept per row.
//
// Exactness: blocks are as long as the attention chunk, so a query's view is
// cut into exactly the chunks of a contiguous cache (ops/attention.h) and a
// sequence's logits are bit-identical alone, batched with others, from a
// shared prefix, or in a single-sequence cache with the same storage.
//
// Streaming heads (a window policy, the streaming heads of a per-head mixed
// cache, a model's sliding-window layers) attend to a ring per sequence
// (kv/seq_rings.h), exactly as the single-sequence cache does; their rows go
// to the blocks too, for prefix sharing (a sequence that reuses a prefix
// fills its rings from the shared blocks). When every head streams, a
// sequence releases the blocks that fell out of its windows (they stay
// cached for their prefix), so it holds about window / kKvBlockRows + 2
// blocks however long it runs.
//
// Prefix sharing: every block is a node of a tree whose root's children are
// first blocks and whose node's children are the blocks that continued it;
// a block records the token ids of its filled rows. reuse_prefix walks the
// tree with a new prompt and shares the matching blocks (the last may match
// only partly: the sequence then diverges mid-block and copies it on its
// first write). Blocks of finished sequences stay in the tree until their
// cells are needed.
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/kv_policy.h"
#include "kv/kv_store.h"
#include "kv/seq_rings.h"

namespace kvforge {

constexpr int32_t kKvBlockRows = 256;  // == kAttnChunk (ops/attention.h), see "Exactness" above

struct PagedKvStats {
  int32_t blocks = 0;         // in the pool
  int32_t blocks_used = 0;    // held by a sequence
  int32_t blocks_cached = 0;  // held by none, kept for their prefix
  int32_t blocks_shared = 0;  // held by more than one sequence
  int64_t prefix_tokens_reused = 0;  // tokens reuse_prefix has handed out, in all
  int64_t copies = 0;                // copy-on-write block copies
  int64_t evictions = 0;             // cached blocks taken back for new rows
};

class PagedKvCache final : public KvCache {
 public:
  // Any storage (hadamard too), full or windowed heads (layout: resolved for
  // the model, e.g. with limit_layer_window; n_cells of full heads unused);
  // not token eviction or soft gates. n_ctx: most tokens of one sequence;
  // n_blocks: pool size; sequences have ids 0 .. max_seqs-1.
  PagedKvCache(const KvLayout& layout, int32_t n_ctx, int32_t n_blocks, int32_t max_seqs);
  PagedKvCache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx, int32_t n_blocks, int32_t max_seqs);

  // Sequences. A sequence exists from add_sequence (empty) to remove_sequence.
  void add_sequence(int32_t seq);
  void remove_sequence(int32_t seq);  // releases its blocks (cached ones stay in the prefix tree)
  bool has_sequence(int32_t seq) const;
  void fork(int32_t src, int32_t dst);        // dst (absent) shares all of src's blocks
  // Keep the first n_keep tokens (throws when a released block would be
  // needed again: a windowed sequence cannot go back before its window).
  void truncate(int32_t seq, int32_t n_keep);
  // Shares the cached blocks whose tokens match tokens[0, n) (an empty
  // sequence only); at most n - 1 tokens, so that the last one is evaluated
  // and gives logits. Returns the number of tokens reused (the new n_past).
  int32_t reuse_prefix(int32_t seq, const int32_t* tokens, int32_t n);
  int32_t n_past_of(int32_t seq) const;
  KvPlan plan_for(int32_t seq, int32_t n_tokens) const;  // throws if the sequence's context is full
  // Blocks a sequence of n_tokens holds at most (plus one for a copy).
  static int32_t blocks_for(int32_t n_tokens) { return (n_tokens + kKvBlockRows - 1) / kKvBlockRows + 1; }
  // The same for a sequence fed in chunks of at most max_chunk tokens in a
  // cache of this layout: when every head streams, the blocks its windows
  // reach plus those of the chunk being written (blocks behind the window
  // are released), if that is fewer. What admission reserves.
  static int32_t blocks_to_reserve(const KvLayout& layout, int32_t n_tokens, int32_t max_chunk);
  int32_t blocks_to_reserve(int32_t n_tokens, int32_t max_chunk) const {
    return blocks_to_reserve(store_.layout(), n_tokens, max_chunk);
  }
  PagedKvStats stats() const;

  // KvCache: single-sequence calls (n_past, room, plan) are about sequence 0.
  std::string describe() const override;
  int32_t capacity() const override { return n_ctx_; }
  int32_t n_past() const override { return has_sequence(0) ? n_past_of(0) : 0; }
  int64_t room() const override { return n_ctx_ - n_past(); }
  int32_t max_wave(int layer, int kv_head, int32_t pos0) const override { return rings_.max_wave(layer, kv_head, pos0); }
  size_t bytes() const override { return store_.bytes() + rings_.bytes(); }
  size_t bytes_per_token() const override { return store_.bytes_per_token(); }
  KvShape shape() const override { return store_.layout().shape; }
  size_t bytes_used() const override;
  void reset() override;  // every sequence removed, prefix tree emptied; sequence 0 added
  KvPlan plan(int32_t n_tokens) const override { return plan_for(0, n_tokens); }
  void prepare(const KvPlan& plan) override;
  void write(int layer, const KvPlan& plan, const float* k, const float* v) override;
  void write_head(int layer, int kv_head, const KvPlan& plan, const float* k, const float* v) override;
  void commit(const KvPlan& plan, const int32_t* tokens) override;
  KvView view(int layer, int kv_head, int32_t q_pos, int32_t seq) const override;

 private:
  struct Block {
    int32_t ref = 0;                // sequences holding it
    bool in_tree = false;           // reachable in the prefix tree
    int32_t parent = -1;            // previous block of the text (-1: a first block)
    std::vector<int32_t> tokens;    // ids of the filled rows
    std::vector<int32_t> children;  // blocks that continue it
    uint64_t last_used = 0;         // tick of the last release (LRU)
  };
  struct Seq {
    bool active = false;
    int32_t n_past = 0;
    std::vector<int32_t> blocks;  // block table; kReleased: fell out of every window
    int32_t n_released = 0;       // blocks[0 .. n_released) are kReleased
    std::vector<KvSegment> segs;  // [n_layer * n_kv_head][max_blocks_] each block's full run
  };

  static constexpr int32_t kReleased = -1;
  static constexpr int32_t kNoParent = -2;  // allocate(): a block that stays out of the prefix tree

  Seq& seq_ref(int32_t seq);
  const Seq& seq_ref(int32_t seq) const;
  int32_t allocate(int32_t parent);  // a block with ref 1 in the tree under parent; throws when none is left
  void release(int32_t block);
  void evict(int32_t block);  // a cached block and its subtree go back to the free list
  void set_block(Seq& s, size_t index, int32_t block);
  int32_t cell_of(const Seq& s, int32_t pos) const { return s.blocks[pos / kKvBlockRows] * kKvBlockRows + pos % kKvBlockRows; }
  void fill_rings(int32_t seq);       // the sequence's rings from its blocks (after prefix reuse, truncate)
  void release_behind_window(Seq& s);  // every head streams: blocks no window reaches any more
  std::vector<int32_t>& children_of(int32_t parent) { return parent < 0 ? roots_ : blocks_[parent].children; }

  KvStore store_;   // the pool: every head's rows, block b in cells b * kKvBlockRows ..
  SeqRings rings_;  // streaming heads: a ring per sequence (what they attend to)
  int32_t n_ctx_ = 0;
  int32_t max_blocks_ = 0;  // per sequence
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;
  std::vector<int32_t> roots_;  // first blocks of cached texts
  std::vector<Seq> seqs_;
  uint64_t tick_ = 0;
  int64_t reused_ = 0, copies_ = 0, evictions_ = 0;
};

}  // namespace kvforge
