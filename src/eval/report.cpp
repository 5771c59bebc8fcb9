// See report.h.
#include "eval/report.h"


#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/decode_speed.h"
#include "eval/eval_text.h"
#include "eval/gnuplot.h"
#include "eval/needle.h"
#include "eval/perplexity.h"
#include "eval/table.h"
#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvforge {

namespace fs = std::filesystem;

std::vector<std::string> default_report_policies() {
  return {"full",   "window:256,sinks:4", "window:1024,sinks:4", "q8",
          "q4",     "q4,hadamard",        "window:1024,sinks:4+q8"};
}

std::vector<std::string> split_policies(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(';', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) fail("empty policy in --policies '{}' (policies are separated by ';')", list);
    out.push_back(item);
    start = end + 1;
  }
  return out;
}

Report run_report(const Model& model, const ContextParams& base, const ReportParams& params, const ReportLog& log) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  Report rep;
  rep.params = params;
  if (params.policies.empty()) fail("report: no policies");
  if (params.lengths.empty()) fail("report: no lengths");
  const int32_t max_len = *std::max_element(params.lengths.begin(), params.lengths.end());
  rep.curve_lengths.push_back(0);
  for (int32_t L = 16; L < max_len; L = L * 5 / 4 + 1) rep.curve_lengths.push_back(L);
  rep.curve_lengths.push_back(max_len);

  const std::vector<TokenId> text = model.tokenizer().encode(read_text_file(params.text_path), true, false);
  const KvShape shape = model.config().kv_shape();
  const int32_t n_ctx_train = model.config().n_ctx_train;

  for (const std::string& spec : params.policies) {
    PolicyRow row;
    row.spec = spec;
    const size_t nl = params.lengths.size();
    row.cache_bytes.assign(nl, NAN);
    row.ppl.assign(nl, NAN);
    row.needle.assign(nl, NAN);
    ContextParams cp = base;
    try {
      cp.kv = parse_kv_policy(spec);
      // Building the cache is where a policy the engine cannot serve yet fails.
      auto probe = make_kv_cache(cp.kv, shape, max_len);
      row.bytes_per_token = (double)probe->bytes_per_token();
      const double cap_bytes = (double)probe->bytes();
      for (int32_t L : rep.curve_lengths)
        row.curve_bytes.push_back(std::min((double)L * row.bytes_per_token, cap_bytes));
      // What the cache holds after L tokens: the allocation for a context of
      // L, but never more than L tokens' worth (a window cache allocates its
      // S + W cells up front even for a shorter text).
      for (size_t i = 0; i < nl; ++i) {
        const int32_t L = params.lengths[i];
        row.cache_bytes[i] =
            std::min((double)make_kv_cache(cp.kv, shape, L)->bytes(), (double)L * row.bytes_per_token);
      }
      row.canonical = cp.kv.describe();
    } catch (const Error& e) {
      row.skipped = e.what();
      rep.notes.push_back(fmt::format("`{}` skipped: {}", spec, e.what()));
      log(fmt::format("policy {}: skipped ({})", spec, e.what()));
      rep.rows.push_back(row);
      continue;
    }
    log(fmt::format("policy {} ({}): {:.0f} bytes/token", spec, row.canonical, row.bytes_per_token));
    for (size_t i = 0; i < nl; ++i) {
      const int32_t L = params.lengths[i];
      if (n_ctx_train > 0 && L > n_ctx_train) {
        log(fmt::format("  length {}: beyond the model's training context ({}), quality not measured", L, n_ctx_train));
        continue;
      }
      try {
        ContextParams pc = cp;
        pc.n_ctx = L;
        Context ctx(model, pc);
        PerplexityParams pp;
        pp.n_ctx = L;
        pp.max_chunks = params.ppl_chunks;
        const PerplexityResult pr = compute_perplexity(ctx, text, pp);
        row.ppl[i] = pr.ppl;
        log(fmt::format("  length {}: perplexity {:.4f} +/- {:.4f} ({} chunks, {:.1f} s)", L, pr.ppl, pr.ppl_stderr,
                        pr.plan.n_chunks, pr.seconds));
      } catch (const Error& e) {
        log(fmt::format("  length {}: perplexity not measured: {}", L, e.what()));
        rep.notes.push_back(fmt::format("`{}` perplexity at {}: {}", spec, L, e.what()));
      }
      NeedleParams np;
      np.lengths = {L};
      np.depths = params.depths;
      np.trials = params.needle_trials;
      np.seed = params.seed;
      const NeedleResult nr = run_needle(model, cp, np, true);
      row.needle[i] = nr.accuracy();
      log(fmt::format("  length {}: needle {}/{} ({:.1f} s)", L, nr.correct, nr.total, nr.seconds));
    }
    const DecodeSpeed ds = measure_decode_speed(model, cp, text, params.decode_depth, params.decode_steps);
    row.decode_tps = ds.tokens_per_second();
    log(fmt::format("  decode at depth {}: {:.1f} tok/s (prefill {:.1f} s)", params.decode_depth, row.decode_tps,
                    ds.prefill_seconds));
    rep.rows.push_back(row);
  }
  rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return rep;
}

std::string report_table(const Report& r) {
  const auto& L = r.params.lengths;
  std::vector<std::string> h{"policy", "bytes/token"};
  for (int32_t l : L) h.push_back(fmt::format("cache @{}", l));
  for (int32_t l : L) h.push_back(fmt::format("ppl @{}", l));
  for (int32_t l : L) h.push_back(fmt::format("needle @{}", l));
  h.push_back(fmt::format("decode tok/s @{}", r.params.decode_depth));
  std::vector<Align> al(h.size(), Align::Right);
  al[0] = Align::Left;
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : r.rows) {
    std::vector<std::string> row{p.canonical.empty() || p.canonical == p.spec
                                     ? p.spec
                                     : fmt::format("{} ({})", p.spec, p.canonical)};
    if (!p.skipped.empty()) {
      row[0] = p.spec + " (skipped)";
      row.resize(h.size(), "n/a");
      rows.push_back(row);
      continue;
    }
    row.push_back(fmt::format("{:.0f}", p.bytes_per_token));
    for (double b : p.cache_bytes) row.push_back(fmt_bytes(b));
    for (double v : p.ppl) row.push_back(fmt_fixed(v, 3));
    for (double v : p.needle) row.push_back(fmt_percent(v));
    row.push_back(fmt_fixed(p.decode_tps, 1));
    rows.push_back(row);
  }
  return format_markdown_table(h, rows, al);
}

std::string report_markdown(const Report& r) {
  const ReportParams& p = r.params;
  std::string depths;
  for (double d : p.depths) depths += (depths.empty() ? "" : ", ") + fmt::format("{:.2f}", d);
  std::string s = fmt::format("# kvforge report: {}\n\n", p.model_name);
  s += report_table(r);
  s += fmt::format(
      "\n- cache @L: bytes the KV cache holds after L tokens (bytes/token: one token in every layer and KV "
      "head; a window policy stops growing at sinks + window tokens).\n"
      "- ppl @L: perplexity of {} in chunks of L tokens, second half of each chunk scored (llama.cpp's "
      "method), first {} chunks.\n"
      "- needle @L: passkey retrieval accuracy, prompts of about L tokens, depths {}, {} trials each (seed {}).\n"
      "- decode tok/s: {} single-token steps after prefilling {} tokens with the policy.\n",
      fs::path(p.text_path).filename().string(), p.ppl_chunks, depths, p.needle_trials, p.seed, p.decode_steps,
      p.decode_depth);
  if (!r.notes.empty()) {
    s += "\nNotes:\n\n";
    for (const auto& n : r.notes) s += fmt::format("- {}\n", n);
  }
  s += fmt::format("\nMeasured in {:.0f} s.\n", r.seconds);
  return s;
}

// ---------------------------------------------------------------------------
// Plot: three panels side by side, drawn by gnuplot from one data file with
// one block per panel (gnuplot's `index`):
//   0: curve_length  bytes(policy 1) bytes(policy 2) ...
//   1: per policy and length: bytes  ppl     "label"
//   2: per policy and length: bytes  needle% "label"

namespace {
std::vector<const PolicyRow*> measured(const Report& r) {
  std::vector<const PolicyRow*> v;
  for (const auto& p : r.rows)
    if (p.skipped.empty()) v.push_back(&p);
  return v;
}
std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  q += '"';
  return q;
}
}  // namespace

std::string report_plot_data(const Report& r) {
  const auto rows = measured(r);
  std::string s = "# length";
  for (const auto* p : rows) s += fmt::format(" {}", quoted(p->spec));
  s += "\n";
  for (size_t i = 0; i < r.curve_lengths.size(); ++i) {
    s += std::to_string(r.curve_lengths[i]);
    for (const auto* p : rows) s += fmt::format(" {:.6g}", p->curve_bytes[i] / 1e6);
    s += "\n";
  }
  for (int block = 0; block < 2; ++block) {
    s += "\n\n# MB value label policy-index\n";
    for (size_t k = 0; k < rows.size(); ++k)
      for (size_t i = 0; i < r.params.lengths.size(); ++i) {
        const PolicyRow* p = rows[k];
        const double v = block == 0 ? p->ppl[i] : p->needle[i] * 100;
        if (std::isnan(v)) continue;
        s += fmt::format("{:.6g} {:.6g} {} {}\n", p->cache_bytes[i] / 1e6, v,
                         quoted(fmt::format("@{}", r.params.lengths[i])), k + 1);
      }
  }
  return s;
}

std::string report_plot_script(const Report& r, const std::string& data_file, const std::string& png_file) {
  const auto rows = measured(r);
  std::string s;
  s += "set terminal pngcairo size 1800,600 noenhanced font 'sans,10'\n";
  s += fmt::format("set output {}\n", quoted(png_file));
  s += fmt::format("set multiplot layout 1,3 title {}\n", quoted(fmt::format("kvforge report: {}", r.params.model_name)));
  s += "set grid\nset key top left font ',8'\n";
  s += "set title 'KV-cache bytes vs context length'\nset xlabel 'context length (tokens)'\n"
       "set ylabel 'cache (MB)'\n";
  if (rows.empty()) {
    s += "set label 'no policy measured' at graph 0.3,0.5\nplot 0 notitle\nplot 0 notitle\nplot 0 notitle\n";
  } else {
    s += "plot ";
    for (size_t k = 0; k < rows.size(); ++k)
      s += fmt::format("{}{} index 0 using 1:{} with lines lw 2 title {}", k ? ", \\\n     " : "",
                       quoted(data_file), k + 2, quoted(rows[k]->spec));
    s += "\n";
    // One series per policy (coloured as its line in the first panel, with
    // a key), each point labelled with its context length.
    auto scatter = [&](int block) {
      std::string p = "plot ";
      for (size_t k = 0; k < rows.size(); ++k)
        p += fmt::format("{} index {} using 1:($4=={} ? $2 : 1/0) with points pt 7 ps 1.5 lc {} title {}, \\\n     ",
                         quoted(data_file), block, k + 1, k + 1, quoted(rows[k]->spec));
      return p + fmt::format("{} index {} using 1:2:3 with labels offset 0,0.9 font ',8' notitle\n",
                             quoted(data_file), block);
    };
    s += "set title 'perplexity vs cache bytes (labels: context length)'\nset xlabel 'cache (MB)'\n"
         "set ylabel 'perplexity'\nset logscale x\nset key top right font ',8'\n";
    s += scatter(1);
    s += "set title 'needle accuracy vs cache bytes (labels: context length)'\nset ylabel 'accuracy (%)'\n"
         "set yrange [-5:135]\nset key top left font ',8'\n";
    s += scatter(2);
  }
  s += "unset multiplot\n";
  return s;
}

void plot_report(const Report& r, const std::string& dir) {
  draw_with_gnuplot(dir, "report", report_plot_data(r), [&](const std::string& data, const std::string& png) {
    return report_plot_script(r, data, png);
  });
}

}  // namespace kvforge
