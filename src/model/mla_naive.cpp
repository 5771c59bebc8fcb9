#include "model/mla_naive.h"

#include <algorithm>

#include "model/context.h"
#include "util/error.h"

namespace kvforge {

MlaAttn parse_mla_attn(const std::string& name) {
  if (name == "absorbed") return MlaAttn::Absorbed;
  if (name == "naive") return MlaAttn::Naive;
  if (name == "auto") return MlaAttn::Auto;
  fail("unknown MLA attention path '{}' (absorbed, naive or auto)", name);
}

const char* mla_attn_name(MlaAttn a) {
  return a == MlaAttn::Naive ? "naive" : a == MlaAttn::Auto ? "auto" : "absorbed";
}

void LatentRows::clear() {
  runs_.clear();
  blocks_.clear();
  n_rows_ = 0;
  stride_ = 0;
}

void LatentRows::add(const KvView& v) {
  if (stride_ == 0) {
    stride_ = v.k_stride;
    row_dim_ = v.head_dim_k;
    hadamard_block_ = v.hadamard_block;
    storage_ = v.storage;
  }
  if (v.n_blocks > 0) {
    auto it = std::find_if(blocks_.begin(), blocks_.end(), [&](const Blocks& b) { return b.table == v.blocks; });
    if (it == blocks_.end()) blocks_.push_back({v.blocks, v.n_blocks, {}});
    else it->n = std::max(it->n, v.n_blocks);
  }
  for (int i = 0; i < v.n_segments; ++i)
    if (v.segments[i].n_rows > 0) {
      const uintptr_t b = (uintptr_t)v.segments[i].k;
      runs_.push_back({b, b + v.segments[i].n_rows * stride_, 0});
    }
}

void LatentRows::finish() {
  for (const Blocks& bl : blocks_)
    for (int i = 0; i < bl.n; ++i)
      if (bl.table[i].n_rows > 0) {
        const uintptr_t b = (uintptr_t)bl.table[i].k;
        runs_.push_back({b, b + bl.table[i].n_rows * stride_, 0});
      }
  std::sort(runs_.begin(), runs_.end(), [](const Run& a, const Run& b) { return a.begin < b.begin; });
  size_t n = 0;  // merge overlapping runs (rows of one storage, so aligned)
  for (const Run& r : runs_) {
    if (n > 0 && r.begin <= runs_[n - 1].end) {
      if ((r.begin - runs_[n - 1].begin) % stride_ != 0) fail("latent rows: misaligned views");
      runs_[n - 1].end = std::max(runs_[n - 1].end, r.end);
    } else {
      runs_[n++] = r;
    }
  }
  runs_.resize(n);
  n_rows_ = 0;
  for (Run& r : runs_) {
    r.first = n_rows_;
    n_rows_ += (int64_t)((r.end - r.begin) / stride_);
  }
}

const uint8_t* LatentRows::source(int64_t i) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), i, [](int64_t x, const Run& r) { return x < r.first; });
  const Run& r = *(it - 1);
  return (const uint8_t*)(r.begin + (uintptr_t)(i - r.first) * stride_);
}

void LatentRows::set_units(int n_units, const float* k, int dk, const float* v, int dv) {
  n_units_ = n_units;
  k_ = k;
  v_ = v;
  dk_ = dk;
  dv_ = dv;
  for (Blocks& bl : blocks_) {
    bl.mirror.resize((size_t)n_units * bl.n);
    for (int u = 0; u < n_units; ++u)
      for (int i = 0; i < bl.n; ++i) bl.mirror[(size_t)u * bl.n + i] = map_segment(bl.table[i], u);
  }
}

KvSegment LatentRows::map_segment(const KvSegment& s, int unit) const {
  const size_t base = (size_t)unit * n_rows_;
  if (s.n_rows == 0) return {k_ + base * dk_, v_ + base * dv_, 0};
  const uintptr_t a = (uintptr_t)s.k;
  auto it = std::upper_bound(runs_.begin(), runs_.end(), a, [](uintptr_t x, const Run& r) { return x < r.begin; });
  const Run& r = *(it - 1);
  const size_t i = base + (size_t)r.first + (a - r.begin) / stride_;
  return {k_ + i * dk_, v_ + i * dv_, s.n_rows};
}

KvView LatentRows::map(const KvView& latent, int unit) const {
  KvView m;
  m.storage = KvStorage::F32;
  m.head_dim_k = dk_;
  m.head_dim_v = dv_;
  m.k_stride = (size_t)dk_ * sizeof(float);
  m.v_stride = (size_t)dv_ * sizeof(float);
  if (latent.n_blocks > 0) {
    const Blocks& bl = *std::find_if(blocks_.begin(), blocks_.end(),
                                     [&](const Blocks& b) { return b.table == latent.blocks; });
    m.blocks = &bl.mirror[(size_t)unit * bl.n];
    m.n_blocks = latent.n_blocks;
  }
  m.n_segments = latent.n_segments;
  for (int i = 0; i < latent.n_segments; ++i) m.segments[i] = map_segment(latent.segments[i], unit);
  return m;
}

void MlaNaive::prepare(const Model& model, int32_t n_batch) {
  const ModelConfig& c = model.config();
  const MlaConfig& m = c.mla;
  const int H = c.n_head, P = m.qk_nope, dc = m.kv_lora_rank;
  row_naive.assign(n_batch, 0);
  uk_data.assign(c.n_layer, {});
  uk.assign(c.n_layer, {});
  for (int l = 0; l < c.n_layer; ++l) {
    if (c.layers[l].attn != AttnBlock::MLA) continue;
    const MlaWeights& W = model.weights().layers[l].mla;
    const int U = (int)W.v_b.size(), g = H / U;
    // The naive path gives a unit one K row, so its heads must share a rope key.
    for (int u = 0; u < U; ++u)
      if (u * g * m.n_rope_keys / H != (u * g + g - 1) * m.n_rope_keys / H)
        fail("--mla-attn naive: the heads of W_UV {} of layer {} read different rope keys", u, l);
    if (P == 0) continue;
    if ((int)W.k_b.size() != U)
      fail("--mla-attn naive: layer {} has {} W_UK and {} W_UV matrices", l, W.k_b.size(), U);
    std::vector<float> col(P);
    for (int u = 0; u < U; ++u) {
      std::vector<float>& t = uk_data[l].emplace_back((size_t)P * dc);  // [P][d_c]
      for (int i = 0; i < dc; ++i) {
        get_row(W.k_b[u], i, col.data());  // row i of W_UK^T: column i of W_UK
        for (int p = 0; p < P; ++p) t[(size_t)p * dc + i] = col[p];
      }
      uk[l].push_back({GgmlType::F32, P, dc, t.data(), (size_t)dc * sizeof(float)});
    }
  }
}

}  // namespace kvforge
