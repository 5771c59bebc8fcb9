// `kvforge convert-mla`: a llama-family GGUF turned into one that caches a
// latent per token and layer (model/convert_mla.h). Calibration text: --calib
// FILE, else the second half of the pinned evaluation text (perplexity scores
// the text from its start).
#include <chrono>
#include <cstdio>
#include <optional>

#include "eval/eval_text.h"
#include "eval/progress_bar.h"
#include "frontend/command.h"
#include "model/convert_mla.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct ConvertMlaOptions {
  std::string model, calib;
  ConvertMlaParams p;
};

// The pinned text from the first line break after its middle.
std::string second_half(const std::string& text) {
  const size_t nl = text.find('\n', text.size() / 2);
  return nl == std::string::npos ? std::string() : text.substr(nl + 1);
}

void run(ConvertMlaOptions& o) {
  o.p.input = resolve_model_path(o.model);
  if (o.calib.empty()) {
    const std::string path = resolve_eval_text("");
    o.p.calib_text = second_half(read_text_file(path));
    o.p.calib_name = "the second half of the pinned evaluation text";
  } else {
    o.p.calib_text = read_text_file(o.calib);
    o.p.calib_name = o.calib;
  }
  auto calib = prefill_progress("calibration");
  o.p.calib_progress = [&](int32_t done, int32_t total) {
    if (done == 0) std::fprintf(stderr, "[kvforge] calibration: %d tokens of %s\n", total, o.p.calib_name.c_str());
    calib(done, total);
  };
  std::optional<ProgressBar> bar;
  const auto t0 = std::chrono::steady_clock::now();
  o.p.layer_progress = [&](int done, int total) {
    if (!bar) bar.emplace("convert-mla", total);
    bar->update(done, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), "layers");
    if (done == total) bar->finish();
  };
  const ConvertMlaResult r = convert_mla(o.p);
  std::fprintf(stderr, "[kvforge] wrote %s: %lld cached values per token and layer instead of %lld (%+.2f %%)\n",
               o.p.output.c_str(), (long long)r.values_after, (long long)r.values_before,
               100.0 * (double)(r.values_after - r.values_before) / (double)r.values_before);
}

CommandRegistrar reg(70, [](CLI::App& root) {
  auto o = std::make_shared<ConvertMlaOptions>();
  auto* c = root.add_subcommand("convert-mla", "Convert a llama-family model to latent attention (a smaller KV cache)");
  c->add_option("-m,--model", o->model, "GGUF model to convert (default: the pulled SmolLM2-135M-Instruct)");
  c->add_option("-o,--output", o->p.output, "Output GGUF")->required();
  c->add_option("--kv-dim", o->p.kv_dim, "D: values of the cached latent per token and layer")->required();
  c->add_option("--rope-dims", o->p.rope_dims, "R: rotary dims each KV head keeps (even; the head dim keeps RoPE whole)")
      ->required();
  c->add_option("--method", o->p.method, "Factorisation: activation (weighted by calibration activations) or svd")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, MlaMethod>{{"svd", MlaMethod::Svd}, {"activation", MlaMethod::Activation}}))
      ->default_str("activation");
  c->add_option("--rope-choice", o->p.rope_choice,
                "Which RoPE pairs a KV head keeps: high (the highest frequencies) or norm (MHA2MLA's 2-norm score)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, MlaRopeChoice>{{"high", MlaRopeChoice::HighFreq}, {"norm", MlaRopeChoice::Norm}}))
      ->default_str("high");
  c->add_option("--proj-type", o->p.proj_type,
                "Storage of the latent projections: f16 (half the bytes each decoded token reads) or f32")
      ->transform(CLI::CheckedTransformer(std::map<std::string, GgmlType>{{"f16", GgmlType::F16}, {"f32", GgmlType::F32}}))
      ->default_str("f16");
  c->add_option("--calib", o->calib, "Calibration text (default: the second half of the pinned evaluation text)");
  c->add_option("--calib-tokens", o->p.calib_tokens, "Calibration tokens (the text's first N)")
      ->check(CLI::Range(64, 1 << 20))
      ->capture_default_str();
  c->add_option("-t,--threads", o->p.n_threads, "Threads of the calibration pass (default: physical cores)");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
