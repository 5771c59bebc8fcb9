#include "kv/paged_cache.h"

#include <algorithm>

#include "util/error.h"

namespace kvforge {

namespace {

// Every head's rows in n_blocks blocks (streaming heads too: a prefix shared
// from the blocks refills their rings).
KvLayout pool_layout(KvLayout layout, int32_t n_ctx, int32_t n_blocks) {
  if (layout.evict.kind != KvEviction::Kind::None)
    fail("the multi-sequence (paged) cache keeps whole histories or windows; token eviction (h2o, snapkv) is "
         "single-sequence");
  for (const KvHeadSpec& h : layout.heads)
    if (h.gate != 1.0f) fail("the multi-sequence (paged) cache does not blend soft gates (gates:); they are single-sequence");
  if (n_ctx <= 0 || n_blocks <= 0) fail("paged KV cache: context {} and pool of {} blocks must be positive", n_ctx, n_blocks);
  if ((int64_t)n_blocks * kKvBlockRows > INT32_MAX) fail("paged KV cache: a pool of {} blocks is too large", n_blocks);
  for (KvHeadSpec& h : layout.heads) h.n_cells = n_blocks * kKvBlockRows;
  return layout;
}

// Tokens a and b have in common at their start, at most n.
int32_t common_prefix(const int32_t* a, const std::vector<int32_t>& b, int32_t n) {
  int32_t i = 0;
  const int32_t m = std::min<int32_t>(n, (int32_t)b.size());
  while (i < m && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

PagedKvCache::PagedKvCache(const KvPolicy& policy, const KvShape& shape, int32_t n_ctx, int32_t n_blocks,
                           int32_t max_seqs)
    : PagedKvCache(resolve_kv_layout(policy, shape, std::max(n_ctx, 1)), n_ctx, n_blocks, max_seqs) {}

PagedKvCache::PagedKvCache(const KvLayout& layout, int32_t n_ctx, int32_t n_blocks, int32_t max_seqs)
    : store_(pool_layout(layout, n_ctx, n_blocks)),
      rings_(layout, std::max(max_seqs, 1)),
      n_ctx_(n_ctx),
      max_blocks_((n_ctx + kKvBlockRows - 1) / kKvBlockRows),
      blocks_(n_blocks) {
  if (max_seqs <= 0) fail("paged KV cache: at least one sequence");
  seqs_.resize(max_seqs);
  reset();
}

std::string PagedKvCache::describe() const {
  const KvLayout& L = store_.layout();
  const KvHeadSpec& h = L.heads[0];
  std::string what = KvPolicy{h.window, h.sinks, h.storage, h.hadamard}.describe();
  if (!L.uniform())
    what = fmt::format("mixed: {} of {} heads streaming+{}", rings_.n_streaming(), L.heads.size(), kv_storage_name(h.storage));
  return fmt::format("{}, paged: {} blocks of {} cells, {} sequences", what, blocks_.size(), kKvBlockRows, seqs_.size());
}

void PagedKvCache::reset() {
  for (Seq& s : seqs_) s = Seq{};
  for (Block& b : blocks_) b = Block{};
  roots_.clear();
  free_.clear();
  for (int32_t b = (int32_t)blocks_.size() - 1; b >= 0; --b) free_.push_back(b);  // lowest first
  add_sequence(0);
}

PagedKvCache::Seq& PagedKvCache::seq_ref(int32_t seq) {
  if (!has_sequence(seq)) fail("KV cache: no sequence {}", seq);
  return seqs_[seq];
}
const PagedKvCache::Seq& PagedKvCache::seq_ref(int32_t seq) const {
  if (!has_sequence(seq)) fail("KV cache: no sequence {}", seq);
  return seqs_[seq];
}

bool PagedKvCache::has_sequence(int32_t seq) const {
  return seq >= 0 && seq < (int32_t)seqs_.size() && seqs_[seq].active;
}

void PagedKvCache::add_sequence(int32_t seq) {
  if (seq < 0 || seq >= (int32_t)seqs_.size()) fail("KV cache: sequence id {} out of range [0, {})", seq, seqs_.size());
  if (seqs_[seq].active) fail("KV cache: sequence {} exists already", seq);
  Seq& s = seqs_[seq];
  s.active = true;
  s.n_past = 0;
  s.n_released = 0;
  s.blocks.clear();
  const KvShape& sh = store_.layout().shape;
  s.segs.assign((size_t)sh.n_layer * sh.n_kv_head * max_blocks_, KvSegment{});
}

void PagedKvCache::remove_sequence(int32_t seq) {
  Seq& s = seq_ref(seq);
  for (int32_t b : s.blocks)
    if (b != kReleased) release(b);
  s = Seq{};
}

void PagedKvCache::fork(int32_t src, int32_t dst) {
  add_sequence(dst);
  const Seq& a = seq_ref(src);
  Seq& b = seqs_[dst];
  b.n_past = a.n_past;
  b.n_released = a.n_released;
  b.blocks = a.blocks;
  b.segs = a.segs;
  for (int32_t blk : b.blocks)
    if (blk != kReleased) ++blocks_[blk].ref;
  if (rings_.any()) rings_.copy_sequence(src, dst);
}

void PagedKvCache::truncate(int32_t seq, int32_t n_keep) {
  Seq& s = seq_ref(seq);
  if (n_keep < 0 || n_keep > s.n_past) fail("KV cache: cannot truncate {} tokens to {}", s.n_past, n_keep);
  const size_t keep_blocks = (size_t)(n_keep + kKvBlockRows - 1) / kKvBlockRows;
  if (n_keep == s.n_past) return;
  while (s.blocks.size() > keep_blocks) {
    if (s.blocks.back() != kReleased) release(s.blocks.back());
    s.blocks.pop_back();
  }
  s.n_released = std::min(s.n_released, (int32_t)s.blocks.size());
  s.n_past = n_keep;  // a kept partial block holds rows past n_keep: the next write copies it (prepare)
  if (rings_.any()) fill_rings(seq);
}

void PagedKvCache::fill_rings(int32_t seq) {
  const Seq& s = seqs_[seq];
  const int32_t n = s.n_past;
  // The rings need positions 0 .. sinks-1 and n - window .. n-1.
  if (s.n_released > 0 && ((rings_.max_sinks() > 0 && n > 0) || s.n_released * kKvBlockRows > n - rings_.max_window()))
    fail("KV cache: sequence {} cannot go back to {} tokens: the blocks before its window were released", seq, n);
  rings_.fill(seq, n, store_, [&](int32_t p) { return cell_of(s, p); });
}

void PagedKvCache::release_behind_window(Seq& s) {
  // The next query (position n_past) sees n_past - window + 1 on, and the
  // rings hold the sinks: blocks wholly before that are read by no one.
  while (s.n_released < (int32_t)s.blocks.size() && (s.n_released + 1) * kKvBlockRows <= s.n_past - rings_.max_window()) {
    release(s.blocks[s.n_released]);
    s.blocks[s.n_released++] = kReleased;
  }
}

int32_t PagedKvCache::n_past_of(int32_t seq) const { return seq_ref(seq).n_past; }

int32_t PagedKvCache::reuse_prefix(int32_t seq, const int32_t* tokens, int32_t n) {
  Seq& s = seq_ref(seq);
  if (s.n_past != 0 || !s.blocks.empty()) fail("KV cache: prefix reuse needs an empty sequence");
  const int32_t limit = std::min(n - 1, n_ctx_);
  int32_t parent = -1, done = 0;
  while (done < limit) {
    const int32_t want = std::min(kKvBlockRows, limit - done);
    int32_t best = -1, best_n = 0;
    for (int32_t c : children_of(parent)) {
      const int32_t m = common_prefix(tokens + done, blocks_[c].tokens, want);
      if (m > best_n) best = c, best_n = m;
    }
    if (best < 0) break;
    ++blocks_[best].ref;
    set_block(s, s.blocks.size(), best);
    done += best_n;
    if (best_n < kKvBlockRows) break;  // diverges (or the prompt ends) inside this block
    parent = best;
  }
  s.n_past = done;
  reused_ += done;
  if (rings_.any() && done > 0) fill_rings(seq);
  if (rings_.all()) release_behind_window(s);  // the rings hold what the windows need (blocks_to_reserve)
  return done;
}

int32_t PagedKvCache::blocks_to_reserve(const KvLayout& layout, int32_t n_tokens, int32_t max_chunk) {
  int32_t window = 0;
  for (const KvHeadSpec& h : layout.heads) {
    if (h.window == 0) return blocks_for(n_tokens);  // a full-history head keeps every block
    window = std::max(window, h.window);
  }
  // Before a chunk the sequence holds the blocks from n_past - window on
  // (release_behind_window); writing it adds those up to n_past + chunk - 1.
  // A span of window + chunk rows touches at most ceil(span / 256) + 1
  // blocks; one more for a copy-on-write.
  const int64_t span = (int64_t)window + std::max(max_chunk, 1);
  return (int32_t)std::min<int64_t>(blocks_for(n_tokens), (span + kKvBlockRows - 1) / kKvBlockRows + 2);
}

KvPlan PagedKvCache::plan_for(int32_t seq, int32_t n_tokens) const {
  const Seq& s = seq_ref(seq);
  if (n_tokens <= 0) fail("KV cache: cannot plan {} tokens", n_tokens);
  if ((int64_t)s.n_past + n_tokens > n_ctx_)
    fail("context full: {} cached + {} new tokens exceed the context size of {}", s.n_past, n_tokens, n_ctx_);
  return {seq, s.n_past, n_tokens};
}

void PagedKvCache::prepare(const KvPlan& plan) {
  Seq& s = seq_ref(plan.seq);
  if (plan.pos0 != s.n_past || plan.pos0 + plan.n_tokens > n_ctx_) fail("KV cache: stale plan for sequence {}", plan.seq);
  const int32_t last = (plan.pos0 + plan.n_tokens - 1) / kKvBlockRows;
  for (int32_t bi = plan.pos0 / kKvBlockRows; bi <= last; ++bi) {
    if (bi == (int32_t)s.blocks.size()) {
      const int32_t parent = bi == 0 ? -1 : s.blocks[bi - 1] == kReleased ? kNoParent : s.blocks[bi - 1];
      set_block(s, bi, allocate(parent));
      continue;
    }
    // Rows are appended in place only to a block this sequence holds alone
    // and whose filled rows end exactly here; otherwise it is copied first.
    const int32_t old = s.blocks[bi];
    const int32_t row0 = std::max(plan.pos0 - bi * kKvBlockRows, 0);
    const Block& b = blocks_[old];
    if (b.ref == 1 && (int32_t)b.tokens.size() == row0) continue;
    const int32_t copy = allocate(b.parent);
    store_.copy_cells(old * kKvBlockRows, copy * kKvBlockRows, row0);
    blocks_[copy].tokens.assign(b.tokens.begin(), b.tokens.begin() + row0);
    release(old);
    set_block(s, bi, copy);
    ++copies_;
  }
}

void PagedKvCache::write(int layer, const KvPlan& plan, const float* k, const float* v) {
  for (int h = 0; h < store_.layout().shape.n_kv_head; ++h) write_head(layer, h, plan, k, v);
}

void PagedKvCache::write_head(int layer, int kv_head, const KvPlan& plan, const float* k, const float* v) {
  const Seq& s = seqs_[plan.seq];
  const KvShape& sh = store_.layout().shape;
  const int nh = sh.n_kv_head;
  const bool ring = rings_.streams(layer, kv_head);
  for (int32_t i = 0; i < plan.n_tokens; ++i) {
    const int32_t p = plan.pos0 + i;
    const float* kr = k + ((size_t)i * nh + kv_head) * sh.head_dim_k;
    const float* vr = sh.v_in_k ? nullptr : v + ((size_t)i * nh + kv_head) * sh.head_dim_v;
    store_.write_row(layer, kv_head, cell_of(s, p), kr, vr);
    if (ring) rings_.write_row(layer, kv_head, plan.seq, p, kr, vr);
  }
}

void PagedKvCache::commit(const KvPlan& plan, const int32_t* tokens) {
  if (!tokens) fail("paged KV cache: commit needs the token ids");
  Seq& s = seq_ref(plan.seq);
  for (int32_t i = 0; i < plan.n_tokens; ++i) {
    const int32_t p = plan.pos0 + i;
    blocks_[s.blocks[p / kKvBlockRows]].tokens.push_back(tokens[i]);
  }
  s.n_past = plan.pos0 + plan.n_tokens;
  if (rings_.all()) release_behind_window(s);
}

KvView PagedKvCache::view(int layer, int kv_head, int32_t q_pos, int32_t seq) const {
  if (rings_.streams(layer, kv_head)) return rings_.view(layer, kv_head, q_pos, seq);
  const Seq& s = seqs_[seq];
  KvView v = store_.base_view(layer, kv_head);
  const int32_t last = q_pos / kKvBlockRows;
  v.blocks = &s.segs[((size_t)layer * store_.layout().shape.n_kv_head + kv_head) * max_blocks_];
  v.n_blocks = last;
  v.segments[0] = store_.segment(layer, kv_head, s.blocks[last] * kKvBlockRows, q_pos % kKvBlockRows + 1);
  v.n_segments = 1;
  return v;
}

void PagedKvCache::set_block(Seq& s, size_t index, int32_t block) {
  if (index == s.blocks.size()) s.blocks.push_back(block);
  else s.blocks[index] = block;
  const KvShape& sh = store_.layout().shape;
  for (int l = 0; l < sh.n_layer; ++l)
    for (int h = 0; h < sh.n_kv_head; ++h)
      s.segs[((size_t)l * sh.n_kv_head + h) * max_blocks_ + index] =
          store_.segment(l, h, block * kKvBlockRows, kKvBlockRows);
}

int32_t PagedKvCache::allocate(int32_t parent) {
  if (free_.empty()) {
    // The least recently released cached block. Its descendants are unused
    // too (a sequence holding a block holds the blocks before it), so its
    // whole subtree goes back to the free list.
    int32_t lru = -1;
    for (int32_t b = 0; b < (int32_t)blocks_.size(); ++b)
      if (blocks_[b].ref == 0 && blocks_[b].in_tree && (lru < 0 || blocks_[b].last_used < blocks_[lru].last_used))
        lru = b;
    if (lru < 0) fail("KV cache pool exhausted: all {} blocks of {} cells are in use", blocks_.size(), kKvBlockRows);
    evict(lru);
    ++evictions_;
  }
  const int32_t b = free_.back();
  free_.pop_back();
  Block& blk = blocks_[b];
  blk = Block{};
  blk.ref = 1;
  // A block continuing one that was evicted while held, or released
  // (kNoParent), stays out of the tree.
  if (parent == -1 || (parent >= 0 && blocks_[parent].in_tree)) {
    blk.in_tree = true;
    blk.parent = parent;
    children_of(parent).push_back(b);
  }
  return b;
}

void PagedKvCache::release(int32_t block) {
  Block& b = blocks_[block];
  if (--b.ref > 0) return;
  b.last_used = ++tick_;
  if (b.in_tree && !b.tokens.empty()) return;  // cached for its prefix
  if (b.in_tree) return evict(block);
  b.tokens.clear();
  free_.push_back(block);
}

void PagedKvCache::evict(int32_t block) {
  std::vector<int32_t>& siblings = children_of(blocks_[block].parent);
  siblings.erase(std::remove(siblings.begin(), siblings.end(), block), siblings.end());
  std::vector<int32_t> todo{block};
  while (!todo.empty()) {
    const int32_t b = todo.back();
    todo.pop_back();
    Block& blk = blocks_[b];
    todo.insert(todo.end(), blk.children.begin(), blk.children.end());
    blk.in_tree = false;
    blk.parent = -1;
    blk.children.clear();
    if (blk.ref == 0) {  // a held one is freed by its last release
      blk.tokens.clear();
      free_.push_back(b);
    }
  }
}

PagedKvStats PagedKvCache::stats() const {
  PagedKvStats st;
  st.blocks = (int32_t)blocks_.size();
  for (const Block& b : blocks_) {
    st.blocks_used += b.ref > 0;
    st.blocks_shared += b.ref > 1;
    st.blocks_cached += b.ref == 0 && b.in_tree;
  }
  st.prefix_tokens_reused = reused_;
  st.copies = copies_;
  st.evictions = evictions_;
  return st;
}

size_t PagedKvCache::bytes_used() const {
  size_t rows = 0;
  for (const Block& b : blocks_)
    if (b.ref > 0 || b.in_tree) rows += b.tokens.size();
  size_t ring_bytes = 0;
  for (const Seq& s : seqs_)
    if (s.active) ring_bytes += rings_.bytes_used(s.n_past);
  return rows * store_.bytes_per_token() + ring_bytes;
}

}  // namespace kvforge
