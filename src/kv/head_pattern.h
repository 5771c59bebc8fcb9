#pragma once
// Head-pattern files of the research code (RLKV `adapter_weights.tsv`,
// DuoAttention `full_attention_heads.tsv`) and the rule that turns their gate
// values into full / streaming heads.
//
// Format (np.savetxt(path, alpha, delimiter="\t")): one row per layer, one
// tab-separated column per KV head, a float gate alpha per (layer, KV head).
// Reading follows np.loadtxt(path, delimiter="\t") then np.clip(alpha, 0, 1):
// blank lines and '#' comments are skipped, every row must have the same
// number of values. Writing uses np.savetxt's default "%.18e".
//
// Selection (DuoAttention's sparsify_attention_heads, which RLKV calls):
// tiny noise in [0, 1e-6) breaks ties, threshold = np.quantile(alpha, s)
// ("linear" method) over all (layer, head), a head is full when its
// alpha >= threshold; s >= 1 keeps no head full, s <= 0 keeps all.
// The reference draws the noise from np.random; here it is deterministic:
// head i (layer-major, i = layer * n_kv_head + head, N heads) gets
// 1e-6 * i / N, so among equal gates the earlier heads become streaming first.
#include <cstdint>
#include <string>
#include <vector>

namespace kvforge {

struct HeadGates {
  int n_layer = 0;
  int n_kv_head = 0;
  std::vector<double> alpha;  // [n_layer][n_kv_head], in [0, 1]

  double at(int layer, int kv_head) const { return alpha[(size_t)layer * n_kv_head + kv_head]; }
};

// Throws kvforge::Error naming the file, line and problem (not a regular
// file, empty, a value that is not a finite number, ragged rows).
HeadGates read_head_gates(const std::string& path);
void write_head_gates(const std::string& path, const HeadGates& gates);

// np.quantile(v, q) with the default "linear" method (v non-empty, q in [0, 1]).
double quantile_linear(std::vector<double> v, double q);

// full[i] = 1 where head i keeps the full history at sparsity s in [0, 1]
// (the rule above, deterministic tie-break included). [n_layer][n_kv_head].
std::vector<uint8_t> select_full_heads(const HeadGates& gates, double sparsity);

// Gates drawn uniformly in [0, 1) from a seed (std::mt19937_64, 53-bit
// doubles): a random-head baseline that goes through the same selection.
HeadGates random_head_gates(int n_layer, int n_kv_head, uint64_t seed);

}  // namespace kvforge
