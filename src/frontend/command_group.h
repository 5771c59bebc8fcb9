#pragma once
// Subcommands that group further subcommands registered from different
// files (e.g. "heads" for "heads eval" and "heads train").
#include <CLI/CLI.hpp>
#include <string>

namespace kvforge::cli {

// The subcommand `name` of root: created (requiring a subcommand of its own)
// by the first caller, found by the others.
CLI::App& command_group(CLI::App& root, const std::string& name, const std::string& description);

}  // namespace kvforge::cli
