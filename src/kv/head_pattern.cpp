#include "kv/head_pattern.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "util/error.h"

namespace kvforge {

namespace {

constexpr size_t kMaxGateFileBytes = 16u << 20;  // far above any real model's layers x heads

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\r' || s[a] == '\f' || s[a] == '\v')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\r' || s[b - 1] == '\f' || s[b - 1] == '\v')) --b;
  return s.substr(a, b - a);
}

double parse_value(const std::string& field, const std::string& path, int line_no) {
  const std::string f = trim(field);
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(f, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (f.empty() || used != f.size())
    fail("head-pattern file {}, line {}: '{}' is not a number (expected tab-separated gate values, one row per "
         "layer)", path, line_no, field);
  if (!std::isfinite(v)) fail("head-pattern file {}, line {}: gate value '{}' is not finite", path, line_no, field);
  return v;
}

}  // namespace

HeadGates read_head_gates(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) fail("cannot open head-pattern file {}", path);
  if (!S_ISREG(st.st_mode)) fail("head-pattern file {} is not a regular file", path);
  if ((size_t)st.st_size > kMaxGateFileBytes)
    fail("head-pattern file {} is {} bytes, more than the {} a gate table can need", path, (size_t)st.st_size,
         kMaxGateFileBytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open head-pattern file {}", path);
  HeadGates g;
  std::string line;
  int line_no = 0, first_row_line = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t hash = line.find('#');  // np.loadtxt's default comment character
    if (hash != std::string::npos) line.resize(hash);
    if (trim(line).empty()) continue;
    std::vector<double> row;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) row.push_back(parse_value(field, path, line_no));
    if (!line.empty() && line.back() == '\t') row.push_back(parse_value("", path, line_no));  // trailing tab
    if (g.n_layer == 0) {
      g.n_kv_head = (int)row.size();
      first_row_line = line_no;
    } else if ((int)row.size() != g.n_kv_head) {
      fail("head-pattern file {}, line {}: {} values, but line {} has {} (every row is a layer with one value "
           "per KV head)", path, line_no, row.size(), first_row_line, g.n_kv_head);
    }
    for (double v : row) g.alpha.push_back(std::clamp(v, 0.0, 1.0));  // np.clip(alpha, 0, 1)
    ++g.n_layer;
  }
  if (g.n_layer == 0) fail("head-pattern file {} holds no gate values", path);
  return g;
}

void write_head_gates(const std::string& path, const HeadGates& g) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) fail("cannot write head-pattern file {}", path);
  for (int l = 0; l < g.n_layer; ++l)
    for (int h = 0; h < g.n_kv_head; ++h)
      std::fprintf(f, "%.18e%c", g.at(l, h), h + 1 == g.n_kv_head ? '\n' : '\t');  // np.savetxt's default
  if (std::fclose(f) != 0) fail("cannot write head-pattern file {}", path);
}

double quantile_linear(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double virt = (double)(n - 1) * q;  // numpy: (n - 1) * q
  if (virt >= (double)(n - 1)) return v[n - 1];
  if (virt <= 0) return v[0];
  const size_t lo = (size_t)std::floor(virt);
  const double a = v[lo], b = v[lo + 1], t = virt - (double)lo;
  // numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) from t >= 0.5 on.
  const double d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

std::vector<uint8_t> select_full_heads(const HeadGates& g, double s) {
  if (!(s >= 0 && s <= 1)) fail("sparsity must be in [0, 1], got {}", s);
  const size_t n = g.alpha.size();
  std::vector<double> a(n);
  for (size_t i = 0; i < n; ++i) a[i] = g.alpha[i] + 1e-6 * (double)i / (double)n;  // deterministic tie-break
  double threshold = quantile_linear(a, s);
  if (s >= 1) threshold = 2;   // every head streaming
  if (s <= 0) threshold = -1;  // every head full
  std::vector<uint8_t> full(n);
  for (size_t i = 0; i < n; ++i) full[i] = a[i] >= threshold;
  return full;
}

HeadGates random_head_gates(int n_layer, int n_kv_head, uint64_t seed) {
  std::mt19937_64 rng(seed);
  HeadGates g;
  g.n_layer = n_layer;
  g.n_kv_head = n_kv_head;
  g.alpha.resize((size_t)n_layer * n_kv_head);
  for (double& a : g.alpha) a = (double)(rng() >> 11) * 0x1.0p-53;
  return g;
}

}  // namespace kvforge
