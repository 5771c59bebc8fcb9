#pragma once
// `kvforge report`: for every KV policy, the memory it costs and the quality
// and speed it keeps, in one Markdown table (report.md) and one figure
// (report.png, drawn by gnuplot):
//   bytes/token | cache bytes at each length | perplexity at each length |
//   needle accuracy at each length | decode tok/s at depth
// Policies --kv does not accept (or cannot build yet) get a row marked
// "skipped" with the reason, so the table always has one row per request.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/context.h"

namespace kvforge {

struct ReportParams {
  std::vector<std::string> policies;
  std::vector<int32_t> lengths{512, 2048, 8192};
  int32_t ppl_chunks = 4;        // chunks per length (each of `length` tokens)
  std::vector<double> depths{0.1, 0.5, 0.9};
  int32_t needle_trials = 5;
  uint64_t seed = 42;
  int32_t decode_depth = 8192;
  int32_t decode_steps = 32;
  std::string text_path;         // perplexity text (tokenized once)
  std::string model_name;        // for the header
};

struct PolicyRow {
  std::string spec;              // as requested
  std::string canonical;         // KvPolicy::describe(), empty if skipped
  std::string skipped;           // reason, empty if measured
  double bytes_per_token = NAN;
  std::vector<double> cache_bytes;  // per length
  std::vector<double> ppl;          // per length (NaN: not measured)
  std::vector<double> needle;       // per length, accuracy in [0, 1]
  double decode_tps = NAN;
  std::vector<double> curve_bytes;  // per Report::curve_lengths
};

struct Report {
  ReportParams params;
  std::vector<PolicyRow> rows;
  std::vector<std::string> notes;
  std::vector<int32_t> curve_lengths;  // x of the cache-bytes curve
  double seconds = 0;
};

std::vector<std::string> default_report_policies();
std::vector<std::string> split_policies(const std::string& list);  // ';'-separated

using ReportLog = std::function<void(const std::string&)>;

Report run_report(const Model& model, const ContextParams& base, const ReportParams& params, const ReportLog& log);

// The Markdown document (header, table, notes).
std::string report_markdown(const Report& r);
// The table alone (what the README shows).
std::string report_table(const Report& r);

// Writes DIR/report.dat and DIR/report.gp and runs gnuplot on it to draw
// DIR/report.png. Throws kvforge::Error if gnuplot is missing or fails.
void plot_report(const Report& r, const std::string& dir);

// The gnuplot script and its data file (for tests: no gnuplot needed).
std::string report_plot_data(const Report& r);
std::string report_plot_script(const Report& r, const std::string& data_file, const std::string& png_file);

}  // namespace kvforge
