// `kvforge perplexity`: llama-perplexity's measurement on a text file (see
// eval/perplexity.h). stdout: the running perplexity after each chunk
// ("[1]12.3456,[2]...") and the final "PPL = x +/- err"; stderr: setup
// notes and a progress bar with ETA.
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eval/eval_text.h"
#include "eval/perplexity.h"
#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int32_t chunks = -1;
  std::string json_out;
};

nlohmann::json result_json(const PerplexityResult& r, const std::string& model, const std::string& text,
                           const Context& ctx) {
  return {{"model", model},
          {"text", text},
          {"kv", ctx.cache().describe()},
          {"n_ctx", r.plan.n_ctx},
          {"n_chunks", r.plan.n_chunks},
          {"n_text_tokens", r.n_text_tokens},
          {"n_scored", r.n_scored},
          {"ppl", r.ppl},
          {"ppl_stderr", r.ppl_stderr},
          {"mean_nll", r.mean_nll},
          {"running_ppl", r.running_ppl},
          {"chunk_nll", r.chunk_nll},
          {"seconds", r.seconds},
          {"kv_bytes", ctx.cache().bytes()},
          {"kv_bytes_per_token", ctx.cache().bytes_per_token()},
          {"threads", ctx.n_threads()}};
}

void run(PerplexityOptions& o) {
  const std::string text_path = resolve_eval_text(o.file);
  const std::string text = read_text_file(text_path);
  auto model = o.model.load_model();
  const std::vector<TokenId> tokens = model->tokenizer().encode(text, true, false);
  ContextParams cp = o.model.context_params();
  if (cp.n_ctx == 0) cp.n_ctx = 512;
  PerplexityParams pp;
  pp.n_ctx = cp.n_ctx;
  pp.max_chunks = o.chunks;
  const ChunkPlan plan = plan_chunks((int64_t)tokens.size(), pp.n_ctx, pp.max_chunks);
  Context ctx(*model, cp);
  std::fprintf(stderr,
               "[kvforge] perplexity of %s: %zu tokens, %d chunks of %d tokens (the last %d of each scored), "
               "KV cache %s, %d threads\n",
               text_path.c_str(), tokens.size(), plan.n_chunks, plan.n_ctx, plan.scored_per_chunk(),
               ctx.cache().describe().c_str(), ctx.n_threads());

  // When stdout is a terminal too, the running values ride in the progress
  // bar and are printed once at the end, so the two streams do not fight
  // over one line; otherwise they go to stdout as each chunk finishes.
  const bool stdout_tty = ::isatty(STDOUT_FILENO) != 0;
  ProgressBar bar("perplexity", plan.n_chunks);
  std::string line;
  const PerplexityResult r = compute_perplexity(ctx, tokens, pp, [&](int32_t c, const PerplexityResult& cur, double s) {
    const std::string item = fmt::format("[{}]{:.4f},", c + 1, cur.running_ppl.back());
    line += item;
    if (!stdout_tty) {
      std::fputs(item.c_str(), stdout);
      std::fflush(stdout);
    }
    bar.update(c + 1, s, fmt::format("ppl {:.4f}", cur.running_ppl.back()));
  });
  bar.finish();
  if (stdout_tty) std::fputs(line.c_str(), stdout);
  std::printf("\nPPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
  std::fflush(stdout);
  std::fprintf(stderr, "[kvforge] %lld tokens scored in %.1f s (%.1f tok/s evaluated)\n", (long long)r.n_scored,
               r.seconds, r.seconds > 0 ? (double)r.plan.n_chunks * (r.plan.n_ctx - 1) / r.seconds : 0.0);
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    if (!out) fail("cannot write '{}'", o.json_out);
    out << result_json(r, resolve_model_path(o.model.model), text_path, ctx).dump(2) << "\n";
  }
}

CommandRegistrar reg(50, [](CLI::App& root) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* c = root.add_subcommand("perplexity", "Perplexity of a text in chunks, as llama.cpp's llama-perplexity computes it");
  o->model.add_to(*c);
  c->add_option("-f,--file", o->file,
                "Text file (default: the pinned evaluation text, Botchan; fetched with `kvforge pull --eval-text`)");
  c->add_option("--chunks", o->chunks, "Evaluate at most N chunks (default: all)")->check(positive_number());
  c->add_option("--json-out", o->json_out, "Also write the result (ppl, error, per-chunk values, timing) as JSON");
  c->footer("-c sets the chunk size (default 512). Each chunk is evaluated from an empty cache and only its second "
            "half is scored; the text needs at least 2 chunks' worth of tokens.");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
