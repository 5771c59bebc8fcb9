// kvforge command-line entry point: parses the command line and turns every
// kvforge::Error into one "error: ..." line on stderr and exit status 1.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "frontend/command.h"
#include "frontend/command_group.h"
#include "util/error.h"

namespace kvforge::cli {

namespace {
std::vector<std::pair<int, CommandSetup>>& registry() {
  static std::vector<std::pair<int, CommandSetup>> r;
  return r;
}
}  // namespace

CommandRegistrar::CommandRegistrar(int order, CommandSetup setup) {
  registry().emplace_back(order, std::move(setup));
}

void setup_all_commands(CLI::App& root) {
  auto& r = registry();
  std::stable_sort(r.begin(), r.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [order, setup] : r) setup(root);
}

CLI::App& command_group(CLI::App& root, const std::string& name, const std::string& description) {
  for (CLI::App* sub : root.get_subcommands({}))
    if (sub->get_name() == name) return *sub;
  CLI::App* group = root.add_subcommand(name, description);
  group->require_subcommand(1);
  return *group;
}

}  // namespace kvforge::cli

int main(int argc, char** argv) {
  CLI::App app{"kvforge: a CPU inference engine for GGUF language models, built around the KV cache"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvforge 0.1.0");
  kvforge::cli::setup_all_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A bad flag is bad input like any other: one "error:" line, status 1.
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return 1;
  } catch (const kvforge::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: internal: %s\n", e.what());
    return 2;
  }
  return 0;
}
