// kvforge convert-mla (see convert_mla.h): checks, calibration statistics,
// the per-layer factorisation, and the output GGUF.
#include "model/convert_mla.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "gguf/gguf.h"
#include "model/context.h"
#include "model/mla_converted.h"
#include "model/model.h"
#include "ops/quantize.h"
#include "util/error.h"

namespace kvforge {

namespace {

using Eigen::MatrixXd;

// What calibration text tells about one layer's attention inputs.
struct LayerStats {
  MatrixXd moment;             // [d+1][d+1]: sum over tokens of [x; 1][x; 1]^T, x the normalised input
  std::vector<double> q_norm;  // [n_head][n_pairs]  sum over tokens of |q pair|
  std::vector<double> k_norm;  // [n_kv_head][n_pairs]
};

// The two dims of RoPE pair i in a head of n_rot rotary dims.
std::pair<int, int> pair_dims(RopePairing pairing, int i, int n_rot) {
  if (pairing == RopePairing::Adjacent) return {2 * i, 2 * i + 1};
  return {i, i + n_rot / 2};
}

void check_convertible(const Model& model, const ConvertMlaParams& p) {
  const ModelConfig& c = model.config();
  const std::string arch = model.file().get_string("general.architecture").value_or("?");
  // The architectures whose loader (arch_llama.cpp) reads a conversion back.
  if (arch != "llama" && arch != "qwen2")
    fail("convert-mla converts llama-family models (architectures llama, qwen2: Llama, SmolLM2, Mistral, Qwen2); "
         "this file's architecture is '{}'",
         arch);
  if (c.mla.kv_lora_rank > 0) fail("this model already caches a latent (it is a conversion)");
  const ModelWeights& w = model.weights();
  for (int l = 0; l < c.n_layer; ++l)
    if (c.layers[l].rope != LayerRope::Main || c.layers[l].window > 0 || !w.layers[l].q_norm.empty())
      fail("convert-mla needs RoPE in every layer, no sliding windows and no Q/K norms (layer {} differs)", l);
  if (c.position != PositionKind::Rope || c.rope.n_rot != c.head_dim_k)
    fail("convert-mla needs RoPE over the whole head ({} of {} dims rotate)", c.rope.n_rot, c.head_dim_k);
  if (p.rope_dims < 2 || p.rope_dims % 2 != 0 || p.rope_dims > c.head_dim_k)
    fail("--rope-dims {}: must be even and in [2, {}] (the head dim)", p.rope_dims, c.head_dim_k);
  const int P = c.head_dim_k - p.rope_dims;
  const int64_t rows = (int64_t)c.n_kv_head * (P + c.head_dim_v);
  const bool bias = !w.layers[0].bk.empty() || !w.layers[0].bv.empty();
  const int64_t rank = std::min<int64_t>(rows, c.d_model + (bias ? 1 : 0));
  if (p.kv_dim < 1 || p.kv_dim > rank)
    fail("--kv-dim {}: must be in [1, {}]: the position-free keys and values of a layer ({} KV heads x ({} + {}) "
         "rows over {} inputs{}) have no more directions",
         p.kv_dim, rank, c.n_kv_head, P, c.head_dim_v, c.d_model, bias ? " and a bias" : "");
}

// Runs the calibration tokens through the model and sums, per layer, the
// second moment of the attention input and the RoPE pair norms of the
// queries and keys (a pair's norm does not change when it rotates).
std::vector<LayerStats> calibrate(const Model& model, const std::vector<TokenId>& tokens, const ConvertMlaParams& p) {
  const ModelConfig& c = model.config();
  const int d = c.d_model, hd = c.head_dim_k, np = c.rope.n_rot / 2;
  std::vector<LayerStats> stats(c.n_layer);
  for (LayerStats& s : stats) {
    s.moment = MatrixXd::Zero(d + 1, d + 1);
    s.q_norm.assign((size_t)c.n_head * np, 0.0);
    s.k_norm.assign((size_t)c.n_kv_head * np, 0.0);
  }
  ContextParams cp;
  cp.n_ctx = (int32_t)tokens.size();
  cp.n_threads = p.n_threads;
  Context ctx(model, cp);
  auto pair_norms = [&](const float* x, int n_heads, std::vector<double>& sum) {
    for (int h = 0; h < n_heads; ++h)
      for (int i = 0; i < np; ++i) {
        const auto [a, b] = pair_dims(c.rope.pairing, i, c.rope.n_rot);
        sum[(size_t)h * np + i] += std::hypot((double)x[h * hd + a], (double)x[h * hd + b]);
      }
  };
  ctx.observe_attention_inputs([&](int l, const float* xn, const float* q, const float* k, int32_t n) {
    MatrixXd x(d + 1, n);  // [x; 1] per token (column)
    for (int32_t t = 0; t < n; ++t) {
      for (int i = 0; i < d; ++i) x(i, t) = xn[(size_t)t * d + i];
      x(d, t) = 1.0;
    }
    stats[l].moment.selfadjointView<Eigen::Lower>().rankUpdate(x);
    for (int32_t t = 0; t < n; ++t) {
      pair_norms(q + (size_t)t * c.q_dim(), c.n_head, stats[l].q_norm);
      pair_norms(k + (size_t)t * c.k_dim(), c.n_kv_head, stats[l].k_norm);
    }
  });
  std::vector<float> logits(c.n_vocab);
  ctx.eval(tokens.data(), (int32_t)tokens.size(), logits.data(), false, p.calib_progress);
  for (LayerStats& s : stats) {
    const MatrixXd full = s.moment.selfadjointView<Eigen::Lower>();
    s.moment = full;
  }
  return stats;
}

// Rows of a weight matrix in f64 ([rows][cols]).
MatrixXd dequantize(const WeightMatrix& W) {
  MatrixXd m(W.rows, W.cols);
  std::vector<float> row(W.cols);
  for (int64_t r = 0; r < W.rows; ++r) {
    get_row(W, r, row.data());
    for (int64_t i = 0; i < W.cols; ++i) m(r, i) = row[i];
  }
  return m;
}

// One layer's new attention tensors.
struct LayerOut {
  std::vector<int> q_rows;       // [q_dim]: original row of each new query row
  std::vector<float> kv_a;       // [D + G*R][d]
  std::vector<float> kv_a_bias;  // [D + G*R] or empty
  std::vector<float> k_b;        // [G][D][P]
  std::vector<float> v_b;        // [G][V][D]
  std::vector<int32_t> rope_pairs;  // [G][R/2]
};

LayerOut convert_layer(const ModelConfig& c, const LayerWeights& L, const LayerStats* stats,
                       const ConvertMlaParams& p) {
  const int d = c.d_model, G = c.n_kv_head, hd = c.head_dim_k, V = c.head_dim_v, R = p.rope_dims, P = hd - R;
  const int D = p.kv_dim, np = c.rope.n_rot / 2, group = c.n_head / G;
  LayerOut out;
  // Kept pairs per KV head (slot order = ascending pair index) and the new
  // order of its dims: [nope dims ascending | kept pairs, two dims each].
  std::vector<std::vector<int>> order(G);
  for (int g = 0; g < G; ++g) {
    std::vector<int> pairs(np);
    for (int i = 0; i < np; ++i) pairs[i] = i;
    if (p.rope_choice == MlaRopeChoice::Norm) {
      std::vector<double> score(np);
      for (int i = 0; i < np; ++i) {
        double q = 0;
        for (int h = g * group; h < (g + 1) * group; ++h) q += stats->q_norm[(size_t)h * np + i];
        score[i] = q * stats->k_norm[(size_t)g * np + i];
      }
      std::stable_sort(pairs.begin(), pairs.end(), [&](int a, int b) { return score[a] > score[b]; });
    }
    pairs.resize(R / 2);  // HighFreq: pairs 0.. (the fastest turning)
    std::sort(pairs.begin(), pairs.end());
    std::vector<uint8_t> rotary(hd, 0);
    std::vector<int> rope;
    for (int i : pairs) {
      const auto [a, b] = pair_dims(c.rope.pairing, i, c.rope.n_rot);
      rotary[a] = rotary[b] = 1;
      rope.push_back(a);
      rope.push_back(b);
      out.rope_pairs.push_back(i);
    }
    for (int i = 0; i < hd; ++i)
      if (!rotary[i]) order[g].push_back(i);
    order[g].insert(order[g].end(), rope.begin(), rope.end());
  }
  for (int h = 0; h < c.n_head; ++h)
    for (int r = 0; r < hd; ++r) out.q_rows.push_back(h * hd + order[h / group][r]);

  // M = [W_k_nope; W_v] with the biases as column d.
  const MatrixXd Wk = dequantize(L.wk), Wv = dequantize(L.wv);
  const int rows = G * (P + V);
  MatrixXd M = MatrixXd::Zero(rows, d + 1);
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < P; ++r) {
      const int src = g * hd + order[g][r];
      M.row(g * P + r).head(d) = Wk.row(src);
      if (!L.bk.empty()) M(g * P + r, d) = L.bk[src];
    }
  for (int r = 0; r < G * V; ++r) {
    M.row(G * P + r).head(d) = Wv.row(r);
    if (!L.bv.empty()) M(G * P + r, d) = L.bv[r];
  }
  const MatrixXd gram = p.method == MlaMethod::Activation ? MatrixXd(M * stats->moment * M.transpose())
                                                         : MatrixXd(M * M.transpose());
  Eigen::SelfAdjointEigenSolver<MatrixXd> eig(gram);
  if (eig.info() != Eigen::Success) fail("the eigendecomposition of a layer's key/value matrix did not converge");
  const MatrixXd U = eig.eigenvectors().rightCols(D).rowwise().reverse();  // [rows][D], largest first
  const MatrixXd A = U.transpose() * M;                                     // [D][d+1]

  const bool bias = !L.bk.empty() || !L.bv.empty();
  const int lat = D + G * R;
  out.kv_a.resize((size_t)lat * d);
  if (bias) out.kv_a_bias.assign(lat, 0.0f);
  for (int r = 0; r < D; ++r) {
    for (int i = 0; i < d; ++i) out.kv_a[(size_t)r * d + i] = (float)A(r, i);
    if (bias) out.kv_a_bias[r] = (float)A(r, d);
  }
  for (int g = 0; g < G; ++g)
    for (int s = 0; s < R; ++s) {
      const int src = g * hd + order[g][P + s], dst = D + g * R + s;
      for (int i = 0; i < d; ++i) out.kv_a[(size_t)dst * d + i] = (float)Wk(src, i);
      if (!L.bk.empty()) out.kv_a_bias[dst] = L.bk[src];
    }
  out.k_b.resize((size_t)G * D * P);
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < D; ++r)
      for (int i = 0; i < P; ++i) out.k_b[((size_t)g * D + r) * P + i] = (float)U(g * P + i, r);
  out.v_b.resize((size_t)G * V * D);
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < V; ++r)
      for (int i = 0; i < D; ++i) out.v_b[((size_t)g * V + r) * D + i] = (float)U(G * P + g * V + r, i);
  return out;
}

// The tensor's shape as the writer takes it.
std::vector<int64_t> shape_of(const gguf::TensorInfo& t) { return {t.ne, t.ne + t.n_dims}; }

// A latent projection (f32 values, ne[0] per row) stored as type t.
void add_projection(gguf::Writer& w, const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v,
                    GgmlType t) {
  if (t == GgmlType::F32) return w.add_tensor(name, t, shape, v.data());
  const int64_t n = shape[0], rows = (int64_t)v.size() / n;
  std::vector<uint8_t> q(row_bytes(t, n) * rows);
  for (int64_t r = 0; r < rows; ++r) quantize_row(t, &v[r * n], &q[r * row_bytes(t, n)], n);
  w.add_tensor(name, t, shape, q.data());
}

void add_layer(gguf::Writer& w, const ModelConfig& c, const gguf::File& f, const std::string& p, const LayerOut& o,
               const ConvertMlaParams& params) {
  const int d = c.d_model, G = c.n_kv_head, D = params.kv_dim, V = c.head_dim_v;
  const int P = c.head_dim_k - params.rope_dims, lat = D + G * params.rope_dims;
  // Queries: the original rows (any type, bytes copied) in the new order.
  const gguf::TensorInfo* q = f.find_tensor(p + "attn_q.weight");
  if (!q) fail("model file lacks tensor '{}attn_q.weight'", p);
  const size_t rb = row_bytes(q->type, q->ne[0]);
  std::vector<uint8_t> qb(rb * o.q_rows.size());
  for (size_t r = 0; r < o.q_rows.size(); ++r) std::copy_n(q->data + rb * o.q_rows[r], rb, &qb[rb * r]);
  w.add_tensor(p + "attn_q.weight", q->type, shape_of(*q), qb.data());
  if (const gguf::TensorInfo* qbias = f.find_tensor(p + "attn_q.bias")) {
    if (qbias->type != GgmlType::F32) fail("'{}attn_q.bias' is not f32", p);
    std::vector<float> b(o.q_rows.size());
    for (size_t r = 0; r < b.size(); ++r) b[r] = ((const float*)qbias->data)[o.q_rows[r]];
    w.add_tensor(p + "attn_q.bias", GgmlType::F32, {(int64_t)b.size()}, b.data());
  }
  add_projection(w, p + "attn_kv_a_mqa.weight", {d, lat}, o.kv_a, params.proj_type);
  if (!o.kv_a_bias.empty()) w.add_tensor(p + "attn_kv_a_mqa.bias", GgmlType::F32, {lat}, o.kv_a_bias.data());
  if (P > 0) add_projection(w, p + "attn_k_b.weight", {P, D, G}, o.k_b, params.proj_type);
  add_projection(w, p + "attn_v_b.weight", {D, V, G}, o.v_b, params.proj_type);
}

bool replaced(const std::string& name) {
  for (const char* s : {".attn_q.weight", ".attn_q.bias", ".attn_k.weight", ".attn_k.bias", ".attn_v.weight",
                        ".attn_v.bias"})
    if (name.size() > std::strlen(s) && name.compare(name.size() - std::strlen(s), std::string::npos, s) == 0)
      return true;
  return false;
}

}  // namespace

ConvertMlaResult convert_mla(const ConvertMlaParams& params) {
  if (params.output.empty()) fail("no output file (-o)");
  std::error_code ec;
  if (std::filesystem::equivalent(params.input, params.output, ec))
    fail("the output would overwrite the input '{}'", params.input);
  // The file's own layout: the query rows are copied as bytes.
  const auto model = Model::load(params.input, Model::LoadOptions{.repack = false});
  check_convertible(*model, params);
  const ModelConfig& c = model->config();

  const bool calib = params.method == MlaMethod::Activation || params.rope_choice == MlaRopeChoice::Norm;
  std::vector<LayerStats> stats;
  int64_t n_calib = 0;
  if (calib) {
    std::vector<TokenId> tokens = model->tokenizer().encode(params.calib_text, false, false);
    constexpr int32_t kMinCalib = 64;
    if ((int64_t)tokens.size() < kMinCalib)
      fail("the calibration text ({}) has {} tokens; at least {} are needed", params.calib_name, tokens.size(),
           kMinCalib);
    if ((int64_t)tokens.size() > params.calib_tokens) tokens.resize(params.calib_tokens);
    n_calib = (int64_t)tokens.size();
    stats = calibrate(*model, tokens, params);
  }

  const gguf::File& f = model->file();
  gguf::Writer w;
  for (const auto& [key, value] : f.metadata())
    if (key.rfind("kvforge.mla.", 0) != 0) w.set(key, value);
  w.set_u32(mla_key::kv_lora_rank, params.kv_dim);
  w.set_u32(mla_key::rope_dims, params.rope_dims);
  w.set_string(mla_key::method, params.method == MlaMethod::Svd ? "svd" : "activation");
  w.set_string(mla_key::rope_choice, params.rope_choice == MlaRopeChoice::Norm ? "norm" : "high");
  w.set_u32(mla_key::calib_tokens, (uint32_t)n_calib);
  w.set_string(mla_key::source, std::filesystem::path(params.input).filename().string());

  std::vector<int32_t> rope_pairs;
  std::vector<LayerOut> layers;
  for (int l = 0; l < c.n_layer; ++l) {
    layers.push_back(convert_layer(c, model->weights().layers[l], calib ? &stats[l] : nullptr, params));
    if (params.layer_progress) params.layer_progress(l + 1, c.n_layer);
  }
  for (const LayerOut& o : layers) rope_pairs.insert(rope_pairs.end(), o.rope_pairs.begin(), o.rope_pairs.end());
  w.set_i32_array(mla_key::rope_pairs, rope_pairs);

  for (const gguf::TensorInfo& t : f.tensors()) {
    if (!replaced(t.name)) {
      w.add_tensor(t.name, t.type, shape_of(t), t.data);
      continue;
    }
    if (t.name.size() < 14 || t.name.compare(t.name.size() - 14, 14, ".attn_q.weight") != 0) continue;
    const std::string prefix = t.name.substr(0, t.name.size() - 13);  // "blk.N."
    const int l = std::stoi(prefix.substr(4));
    if (l < 0 || l >= c.n_layer) fail("tensor '{}' names a layer outside [0, {})", t.name, c.n_layer);
    add_layer(w, c, f, prefix, layers[l], params);
  }
  w.write(params.output);
  return {(int64_t)c.n_kv_head * (c.head_dim_k + c.head_dim_v),
          params.kv_dim + (int64_t)c.n_kv_head * params.rope_dims, n_calib};
}

}  // namespace kvforge
