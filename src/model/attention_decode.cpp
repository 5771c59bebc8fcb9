// A decode batch's attention as one pool job of (token, KV head) pairs: each
// task ropes its pair's query heads and key, writes its K/V row, attends
// over the pair's view (attend_head, the call of the serial decode path, so
// the same bits) and converts
// its outputs for the output projection. A batch of 8 sequences used to run
// the RoPE, the K/V writes (a cache miss per row) and the conversion on the
// calling thread while the others waited.
#include <cstdint>

#include "model/context.h"

namespace kvforge {

bool Context::attend_decode_pairs(int layer, const std::vector<BatchRun>& runs, float* q, float* k, size_t k_row,
                                  const float* v, size_t v_row, const AttnArgs& a, const Rope* rope, const float* cs,
                                  int n_rot, const WeightMatrix& wo) {
  const int nh = a.n_kv_head;
  const int64_t n_pairs = (int64_t)runs.size() * nh;
  // Enough pairs to share out (else the chunks of each pair are the tasks),
  // one token per run, full-history heads without soft gates (rings, gates
  // and learning caches keep their own order of writes and reads).
  if (observer_ || cache_->observes() || a.naive || n_pairs < 4 * (int64_t)pool_.size()) return false;
  for (const BatchRun& r : runs)
    if (r.plan.n_tokens != 1) return false;
  for (int h = 0; h < nh; ++h) {
    if (cache_->gate(layer, h) != 1.0f) return false;
    for (const BatchRun& r : runs)
      if (cache_->max_wave(layer, h, r.plan.pos0) != INT32_MAX) return false;
  }
  OpScope timed(timer_, Op::Attention);  // with the RoPE and the K/V writes
  const ActForm form(wo);
  const size_t span = (size_t)a.group * a.dv;  // one pair's outputs
  const size_t rb = form.row_bytes();
  const bool convert = rb > 0 && span % form.block() == 0 && a.out_row == (size_t)wo.cols;
  if (convert && attn_xq_.size() < runs.size() * rb) attn_xq_.resize(runs.size() * rb);
  pool_.parallel_for(n_pairs, [&](int64_t i, int) {
    const int32_t t = (int32_t)(i / nh);  // batch row t is run t's token
    const int h = (int)(i % nh);
    const KvPlan& p = runs[t].plan;
    float* qh = q + (size_t)t * a.q_row + (size_t)h * a.group * a.dk;  // [group][dk]
    float* kt = k + (size_t)t * k_row;                                 // [n_kv_head][dk]
    if (rope) {
      rope->apply(qh, a.group, a.dk, cs + (size_t)t * n_rot);
      rope->apply(kt + (size_t)h * a.dk, 1, a.dk, cs + (size_t)t * n_rot);
    }
    cache_->write_head(layer, h, p, kt, v + (size_t)t * v_row);
    float* out = a.out + (size_t)t * a.out_row;
    attend_head(layer, h, p.pos0, p.seq, a, qh, out + h * span);
    if (convert) form.convert(out, (int64_t)(h * span), (int64_t)((h + 1) * span), attn_xq_.data() + t * rb);
  });
  attn_xq_ready_ = convert;
  return true;
}

}  // namespace kvforge
