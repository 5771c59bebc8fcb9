#pragma once
// Each CLI command lives in its own cmd_*.cpp and registers itself here, so
// adding a command never touches main.cpp.
#include <CLI/CLI.hpp>
#include <functional>

namespace kvforge::cli {

// Adds a subcommand (with its options and callback) to the root app.
using CommandSetup = std::function<void(CLI::App& root)>;

struct CommandRegistrar {
  // order: position in --help (lower first).
  CommandRegistrar(int order, CommandSetup setup);
};

void setup_all_commands(CLI::App& root);

}  // namespace kvforge::cli
