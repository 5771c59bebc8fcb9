// The naive path of latent attention (model/mla_naive.h). Per wave, the
// latent rows its queries read are dequantized once (the stored rows, so
// prefill, decode and recomputation read the same values), then for the
// units (W_UK/W_UV pairs) as many at a time as fit a bounded scratch:
//   K_u = [W_UK,u c | k_pe of u's rope key]   (P + R)     over all rows
//   V_u = W_UV,u c                             (V)
// in one matmul call, and the ordinary attention (Context::attention) of
// the unit's query heads [q_nope | RoPE(q_pe)] over views that mirror the
// latent ones. Cost: the decompression is ~2 (P + V) d_c flops per row and
// unit, shared by the wave's queries; per query and row the attention is
// P + R + V per head instead of 2 d_c + R absorbed -- so it pays for long
// waves (prefill) and not for decode (README: Latent cache).
#include <algorithm>

#include "model/context.h"
#include "ops/hadamard.h"

namespace kvforge {

namespace {

// Decompressed K/V rows one pass over the units may hold: at most 32 MiB,
// or one unit's rows when they alone need more.
constexpr size_t kNaiveScratchFloats = (size_t)8 << 20;

template <class T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void Context::attention_mla_naive(int layer, const std::vector<Wave>& waves, const AttnArgs& a) {
  std::vector<Wave> absorbed, naive;  // one wave per run at most
  for (const Wave& w : waves) (mla_naive_.row_naive[w.row0] ? naive : absorbed).push_back(w);
  if (!absorbed.empty()) {
    AttnArgs b = a;
    b.naive = nullptr;
    attention(layer, absorbed, b, nullptr);
  }
  if (naive.empty()) return;
  const ModelConfig& c = model_.config();
  const MlaConfig& m = c.mla;
  const MlaWeights& W = model_.weights().layers[layer].mla;
  const AttnArgs& na = *a.naive;
  const int H = c.n_head, dc = m.kv_lora_rank, P = m.qk_nope, R = m.qk_rope, rw = m.rope_width();
  const int V = na.dv, U = na.n_kv_head, g = na.group, dk = na.dk;  // dk = P + R
  MlaNaive& s = mla_naive_;

  // The distinct latent rows the waves' queries see, as f32: c [rows][d_c]
  // and pe [rows][RW] (rotated back when stored Hadamard-rotated).
  LatentRows& rows = s.rows;
  rows.clear();
  for (const Wave& w : naive)
    for (int32_t t = 0; t < w.plan.n_tokens; ++t) rows.add(cache_->view(layer, 0, w.plan.pos0 + t, w.plan.seq));
  rows.finish();
  const int64_t nr = rows.n_rows();
  grow(s.c, (size_t)nr * dc);
  grow(s.pe, (size_t)nr * rw);
  const GgmlType type = kv_storage_type(rows.storage());
  const int ld = rows.row_dim(), hb = rows.hadamard_block();
  constexpr int64_t kRows = 64;  // rows per task
  pool_.parallel_for((nr + kRows - 1) / kRows, [&](int64_t i, int) {
    thread_local std::vector<float> row;
    row.resize(ld);
    for (int64_t r = i * kRows; r < std::min(nr, (i + 1) * kRows); ++r) {
      dequantize_row(type, rows.source(r), row.data(), ld);
      if (hb > 0) hadamard_rotate(row.data(), ld, hb);
      std::copy_n(row.data(), dc, &s.c[(size_t)r * dc]);
      std::copy_n(row.data() + dc, rw, &s.pe[(size_t)r * rw]);
    }
  });

  const size_t per_unit = (size_t)nr * (P + dk + V);
  const int nu = (int)std::clamp<size_t>(kNaiveScratchFloats / std::max<size_t>(per_unit, 1), 1, U);
  grow(s.knope, (size_t)nu * nr * P);
  grow(s.k, (size_t)nu * nr * dk);
  grow(s.v, (size_t)nu * nr * V);
  std::vector<const WeightMatrix*> ws;
  std::vector<float*> ys;
  for (int u0 = 0; u0 < U; u0 += nu) {
    const int n_u = std::min(nu, U - u0);
    ws.clear();
    ys.clear();
    for (int u = 0; u < n_u; ++u) {
      if (P > 0) {
        ws.push_back(&s.uk[layer][u0 + u]);
        ys.push_back(&s.knope[(size_t)u * nr * P]);
      }
      ws.push_back(&W.v_b[u0 + u]);
      ys.push_back(&s.v[(size_t)u * nr * V]);
    }
    matmul_many(ws.data(), ys.data(), (int)ws.size(), s.c.data(), nr, pool_, scratch_);
    const int64_t n_tasks = (nr + kRows - 1) / kRows;
    pool_.parallel_for(n_u * n_tasks, [&](int64_t i, int) {  // K rows [k_nope | the unit's rope key]
      const int u = (int)(i / n_tasks);
      const int key = (u0 + u) * g * m.n_rope_keys / H;
      const int64_t r1 = std::min(nr, (i % n_tasks + 1) * kRows);
      for (int64_t r = i % n_tasks * kRows; r < r1; ++r) {
        float* k = &s.k[((size_t)u * nr + r) * dk];
        std::copy_n(&s.knope[((size_t)u * nr + r) * P], P, k);
        std::copy_n(&s.pe[(size_t)r * rw + key * R], R, k + P);
      }
    });
    rows.set_units(n_u, s.k.data(), dk, s.v.data(), V);
    AttnArgs p = na;
    p.q += (size_t)u0 * g * dk;
    p.out += (size_t)u0 * g * V;
    p.n_kv_head = n_u;
    p.rows = &rows;
    attention(layer, naive, p, nullptr);
  }
}

}  // namespace kvforge
